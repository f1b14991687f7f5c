"""The Triton ViT with folded layernorms (VITBENCH_LN_FOLD=1, kernels/_lnfold.py) gives HF's answers.

Same criteria as test_model_numerics: fp32 rel err <= 1e-4 against HF; fp16 error no worse than
1.5x HF's own fp16 error. GPU: ViT-B/16 in fp16 and bf16.
"""

from __future__ import annotations

import pytest
import torch

from tests.test_model_numerics import _cfg, _fp16_check, _hf_outputs, _pixels
from vitbench._backend import DEVICE
from vitbench.model import checkpoints
from vitbench.model.configs import hf_config
from vitbench.model.modules import TritonViT
from vitbench.numerics import rel_err


@pytest.fixture(autouse=True)
def fold_on(monkeypatch):
    monkeypatch.setenv("VITBENCH_LN_FOLD", "1")


@pytest.mark.parametrize("config,head,pooler", [
    (hf_config("vit-tiny-test"), True, False),  # D = 64: folded
    (_cfg(image_size=(16, 24), hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, qkv_bias=False,
          num_hidden_layers=3), False, True),  # D = 32, qkv without bias: folded, three layers
], ids=["vit-tiny-test", "no-qkv-bias"])
def test_fp32_folded_matches_hf(config, head, pooler):
    ckpt = checkpoints.random_weights(config, seed=3, head=head, pooler=pooler)
    tri = TritonViT(ckpt.spec, ckpt.local).to(DEVICE)
    assert tri.fold and tri.blocks[1].fold_ln1 and not tri.blocks[0].fold_ln1
    x = _pixels(3, ckpt.spec)
    with torch.inference_mode():
        got = tri(x)
    want = _hf_outputs(checkpoints.hf_model(ckpt, attn_implementation="eager"), x)
    for field, g, w in zip(("last_hidden_state", "pooler_output", "logits"), got, want):
        assert (g is None) == (w is None), field
        if w is not None:
            assert rel_err(g, w) <= 1e-4, (field, rel_err(g, w))


def test_fp16_folded_error_within_hf_own():
    _fp16_check(_cfg(), B=24)


def test_folded_logits_only_matches_full_forward():
    ckpt = checkpoints.random_weights(hf_config("vit-tiny-test"), seed=7, head=True)
    tri = TritonViT(ckpt.spec, ckpt.local).to(DEVICE)
    x = _pixels(3, ckpt.spec)
    with torch.inference_mode():
        full = tri(x)[2]
        got = tri(x, logits_only=True)[2]
        want = checkpoints.hf_model(ckpt, attn_implementation="eager")(pixel_values=x).logits
    assert rel_err(got, full) <= 1e-5 and rel_err(got, want) <= 1e-4


def test_not_folded_when_the_width_is_not_a_multiple_of_32():
    ckpt = checkpoints.random_weights(_cfg(hidden_size=48, num_attention_heads=3), seed=1)
    tri = TritonViT(ckpt.spec, ckpt.local)
    assert not tri.fold and not any(b.fold_ln2 for b in tri.blocks)


def test_colsums_follow_a_dtype_change_and_stay_fp32():
    ckpt = checkpoints.random_weights(hf_config("vit-tiny-test"), seed=2)
    tri = TritonViT(ckpt.spec, ckpt.local).to(DEVICE)
    block = tri.blocks[1]
    tri.to(torch.float16)
    for lin in ("qkv", "fc1"):
        w = getattr(block, lin + "_w")
        assert w.dtype == torch.float16 and block.colsum[lin].dtype == torch.float32
        torch.testing.assert_close(block.colsum[lin], w.float().sum(dim=1))


def test_off_by_default(monkeypatch):
    monkeypatch.delenv("VITBENCH_LN_FOLD")
    ckpt = checkpoints.random_weights(hf_config("vit-tiny-test"), seed=2)
    assert not TritonViT(ckpt.spec, ckpt.local).fold


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_vit_b16_folded_matches_hf(dtype, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    ckpt = checkpoints.random_weights(hf_config("vit-base-patch16-224"))
    x = _pixels(64, ckpt.spec)
    with torch.inference_mode():
        ref = checkpoints.hf_model(ckpt, device="cuda", attn_implementation="eager")(pixel_values=x).logits
        hf = checkpoints.hf_model(ckpt, dtype=dtype, device="cuda", attn_implementation="eager")
        hf_logits = hf(pixel_values=x.to(dtype)).logits
        tri = TritonViT(ckpt.spec, ckpt.local).to(device="cuda", dtype=dtype)
        assert tri.fold
        logits = tri(x.to(dtype))[2]
        cls_logits = tri(x.to(dtype), logits_only=True)[2]
    assert rel_err(logits, ref) <= 1.5 * rel_err(hf_logits, ref)
    assert rel_err(cls_logits, ref) <= 1.5 * rel_err(hf_logits, ref)
