"""The Triton ViT with folded layernorms (VITBENCH_LN_FOLD=1, kernels/_lnfold.py) gives HF's answers;
the default (auto) folds in small forwards only; 0 never folds.

Same criteria as test_model_numerics: fp32 rel err <= 1e-4 against HF; fp16 error no worse than
1.5x HF's own fp16 error. GPU: ViT-B/16 in fp16 and bf16.
"""

from __future__ import annotations

import pytest
import torch

from tests.test_model_numerics import _cfg, _fp16_check, _pixels
from vitbench._backend import DEVICE
from vitbench.kernels import _lnfold as lnfold
from vitbench.model import checkpoints, modules
from vitbench.model.configs import hf_config
from vitbench.model.modules import TritonViT
from vitbench.numerics import rel_err


@pytest.fixture(autouse=True)
def fold_on(monkeypatch):
    monkeypatch.setenv("VITBENCH_LN_FOLD", "1")


def test_fp32_is_not_folded_and_matches_hf():
    # fp32 weights keep their layernorms (Block's docstring: rounding of the un-centred h)
    ckpt = checkpoints.random_weights(hf_config("vit-tiny-test"), seed=3, head=True)
    tri = TritonViT(ckpt.spec, ckpt.local).to(DEVICE)
    assert tri.fold and not any(b.fold_ln1 or b.fold_ln2 for b in tri.blocks)
    x = _pixels(3, ckpt.spec)
    with torch.inference_mode():
        got = tri(x)[2]
    want = checkpoints.hf_model(ckpt, attn_implementation="eager")(pixel_values=x).logits
    assert rel_err(got, want) <= 1e-4


def test_fp16_folds_every_layernorm_but_layer_0_ln1():
    ckpt = checkpoints.random_weights(_cfg(num_hidden_layers=3), seed=3)
    tri = TritonViT(ckpt.spec, ckpt.local).to(device=DEVICE, dtype=torch.float16)
    assert [(b.fold_ln1, b.fold_ln2) for b in tri.blocks] == [(False, True), (True, True), (True, True)]


@pytest.mark.parametrize("config", [
    _cfg(),
    _cfg(image_size=(16, 24), hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, qkv_bias=False,
         num_hidden_layers=3),  # qkv without bias (b' = W beta), tanh GELU, another eps
], ids=["base", "no-qkv-bias"])
def test_fp16_folded_error_within_hf_own(config):
    _fp16_check(config, B=24)


def test_fp16_folded_logits_only_matches_full_forward():
    ckpt = checkpoints.random_weights(hf_config("vit-tiny-test"), seed=7, head=True)
    tri = TritonViT(ckpt.spec, ckpt.local).to(device=DEVICE, dtype=torch.float16)
    x = _pixels(3, ckpt.spec, torch.float16)
    with torch.inference_mode():
        full = tri(x)[2]
        got = tri(x, logits_only=True)[2]
    assert tri.blocks[-1].fold_ln1 and rel_err(got, full) <= 5e-3


def test_not_folded_when_the_width_is_not_a_multiple_of_32():
    ckpt = checkpoints.random_weights(_cfg(hidden_size=48, num_attention_heads=3), seed=1)
    tri = TritonViT(ckpt.spec, ckpt.local)
    assert not tri.fold and not any(b.fold_ln2 for b in tri.blocks)


def test_folded_weights_follow_a_dtype_change():
    ckpt = checkpoints.random_weights(hf_config("vit-tiny-test"), seed=2)
    tri = TritonViT(ckpt.spec, ckpt.local).to(DEVICE)
    block = tri.blocks[1]
    assert block.folded == {}  # fp32
    tri.to(torch.float16)
    for lin, ln in (("qkv", "ln1"), ("fc1", "ln2")):
        w_f, b_f, colsum = block.folded[lin]
        w = getattr(block, lin + "_w")  # the original, cast
        assert w.dtype == w_f.dtype == b_f.dtype == torch.float16 and colsum.dtype == torch.float32
        torch.testing.assert_close(w_f.float(), w.float() * getattr(block, ln + "_w").float(), rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(colsum, w_f.float().sum(dim=1))
    tri.to(torch.float32)
    assert block.folded == {}
    assert set(tri.state_dict()) == set(TritonViT(ckpt.spec, ckpt.local).state_dict())  # unchanged


def _layernorm_calls(monkeypatch, tri, x) -> int:
    """How many layernorm launches one forward of `tri` on `x` makes."""
    calls = []
    real = modules.layernorm
    monkeypatch.setattr(modules, "layernorm", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.inference_mode():
        tri(x)
    return len(calls)


@pytest.mark.parametrize("mode,small,large", [
    (None, 2, 7),  # auto (the default): folded at <= LN_FOLD_AUTO_ROWS rows only
    ("auto", 2, 7),
    ("1", 2, 2),  # always: layer 0's ln1 and the final norm are all that is left
    ("0", 7, 7),  # never
])
def test_fold_mode_decides_per_forward_rows(monkeypatch, mode, small, large):
    if mode is None:
        monkeypatch.delenv("VITBENCH_LN_FOLD")
    else:
        monkeypatch.setenv("VITBENCH_LN_FOLD", mode)
    ckpt = checkpoints.random_weights(_cfg(num_hidden_layers=3), seed=4)
    tri = TritonViT(ckpt.spec, ckpt.local).to(device=DEVICE, dtype=torch.float16)
    T = ckpt.spec.tokens
    monkeypatch.setattr(lnfold, "LN_FOLD_AUTO_ROWS", 2 * T)  # 2 images fold, 3 do not
    assert _layernorm_calls(monkeypatch, tri, _pixels(2, ckpt.spec, torch.float16)) == small
    assert _layernorm_calls(monkeypatch, tri, _pixels(3, ckpt.spec, torch.float16)) == large


def test_unfolded_fp16_error_within_hf_own(monkeypatch):
    """The default fp16 checks (test_model_numerics) fold at their small batches: here unfolded."""
    monkeypatch.setenv("VITBENCH_LN_FOLD", "0")
    _fp16_check(_cfg(), B=24)


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
