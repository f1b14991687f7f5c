"""The Triton ViT gives HF's answers: same weights, same pixels, HF's own output as the judge.

CPU (Triton interpreter): small random configs, fp32 (exact dots, rel err <= 1e-4) and fp16.
HF runs fp16 on CPU here (torch 2.13), so the fp16 criterion is the issue's: error vs the fp32 HF
reference no worse than 1.5x HF's own fp16 error, and top-1 agreement with the fp32 reference
no lower than HF fp16's minus 1 percentage point. GPU: vit-base-patch16-224 in fp32/fp16/bf16.
"""

from __future__ import annotations

import pytest
import torch
from transformers import ViTConfig

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.model import checkpoints
from vitbench.model.configs import hf_config, spec_from_hf_config
from vitbench.model.modules import TritonViT
from vitbench.numerics import rel_err


def _cfg(**kw) -> ViTConfig:
    base = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                image_size=16, patch_size=8, num_labels=10)
    return ViTConfig(**{**base, **kw})


# (name, config, head, pooler): a classifier, a ViTModel with pooler and odd sizes (qkv without
# bias, tanh GELU, 3 heads of 16), a non-square image with the tanh GELU and another eps.
FP32_CASES = [
    ("vit-tiny-test", hf_config("vit-tiny-test"), True, False),
    ("pooler-odd", _cfg(hidden_size=48, num_attention_heads=3, intermediate_size=80, image_size=24,
                        patch_size=6, num_hidden_layers=1, qkv_bias=False, hidden_act="gelu_new",
                        pooler_output_size=40), False, True),
    ("non-square", _cfg(image_size=(16, 24), hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                        num_labels=7), True, False),
]


def _pixels(B: int, spec, dtype=torch.float32) -> torch.Tensor:
    x = torch.rand(B, spec.channels, spec.image_h, spec.image_w) * 2 - 1  # like a processed image
    return x.to(device=DEVICE, dtype=dtype)


def _hf_outputs(model, x):
    """(last_hidden_state, pooler_output, logits) of an HF ViTModel / ViTForImageClassification."""
    with torch.inference_mode():
        if hasattr(model, "classifier"):
            out = model(pixel_values=x, output_hidden_states=True)
            hidden = model.vit.layernorm(out.hidden_states[-1])
            return hidden, None, out.logits
        out = model(pixel_values=x)
        return out.last_hidden_state, out.pooler_output, None


@pytest.mark.parametrize("name,config,head,pooler", FP32_CASES, ids=[c[0] for c in FP32_CASES])
def test_fp32_matches_hf(name, config, head, pooler):
    ckpt = checkpoints.random_weights(config, seed=3, head=head, pooler=pooler)
    hf = checkpoints.hf_model(ckpt, attn_implementation="eager")
    tri = TritonViT(ckpt.spec, ckpt.local).to(DEVICE)
    x = _pixels(3, ckpt.spec)
    with torch.inference_mode():
        got = tri(x)
    want = _hf_outputs(hf, x)
    for field, g, w in zip(("last_hidden_state", "pooler_output", "logits"), got, want):
        assert (g is None) == (w is None), field
        if w is not None:
            assert g.shape == w.shape and g.dtype == torch.float32
            assert rel_err(g, w) <= 1e-4, (field, rel_err(g, w))


def _fp16_check(config, B: int):
    ckpt = checkpoints.random_weights(config, seed=5)
    ref_model = checkpoints.hf_model(ckpt, attn_implementation="eager")  # fp32 reference
    hf16 = checkpoints.hf_model(ckpt, dtype=torch.float16, attn_implementation="eager")
    tri = TritonViT(ckpt.spec, ckpt.local).to(device=DEVICE, dtype=torch.float16)
    x = _pixels(B, ckpt.spec)
    with torch.inference_mode():
        ref = ref_model(pixel_values=x).logits
        hf_out = hf16(pixel_values=x.half()).logits
        out = tri(x.half())[2]
    assert out.dtype == torch.float16
    hf_err, err = rel_err(hf_out, ref), rel_err(out, ref)
    assert 0 < hf_err < 1e-2  # HF fp16 really ran in fp16 (else the criterion means nothing)
    assert err <= 1.5 * hf_err, (err, hf_err)
    top1 = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
    hf_top1 = (hf_out.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert top1 >= hf_top1 - 0.01, (top1, hf_top1)


def test_fp16_vit_tiny_test_error_within_hf_own():
    _fp16_check(hf_config("vit-tiny-test"), B=2)


def test_fp16_top1_agreement_over_a_batch():
    _fp16_check(_cfg(), B=24)


@pytest.mark.parametrize("change,needle", [
    ({"hidden_act": "relu"}, "hidden_act"),
    ({"hidden_act": "quick_gelu"}, "hidden_act"),
    ({"image_size": 20}, "multiple of patch_size"),
    ({"patch_size": (8, 4)}, "square"),
])
def test_unsupported_configs_are_refused(change, needle):
    with pytest.raises(VitbenchError, match=needle):
        spec_from_hf_config(_cfg(**change), head=True)


def test_other_model_type_and_pooler_act_are_refused():
    from transformers import DeiTConfig

    with pytest.raises(VitbenchError, match="model_type"):
        spec_from_hf_config(DeiTConfig())
    with pytest.raises(VitbenchError, match="pooler_act"):
        spec_from_hf_config(_cfg(pooler_act="relu"), pooler=True)


def test_flops_formula_matches_vit_b16_arithmetic():
    # ANCHORS.md: 35.1 GFLOP per image for ViT-B/16 at 224 (linears + attention + patch embed).
    spec = spec_from_hf_config(hf_config("vit-base-patch16-224"))
    assert abs(spec.flops(1) / 1e9 - 35.1) < 0.1
    model = checkpoints._random_hf_model(hf_config("vit-tiny-test"), seed=0, head=True, pooler=False)
    tiny = spec_from_hf_config(hf_config("vit-tiny-test"), head=True)
    assert tiny.num_params() == sum(p.numel() for p in model.parameters())


# --- GPU: ViT-B/16 in the three dtypes ---------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_vit_b16_matches_hf_on_gpu(dtype, monkeypatch):
    # exact fp32 reference: no TF32 in HF's matmuls nor in its patch-embedding convolution
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    ckpt = checkpoints.random_weights(hf_config("vit-base-patch16-224"))
    ref_model = checkpoints.hf_model(ckpt, device="cuda", attn_implementation="eager")
    x = _pixels(64, ckpt.spec)
    with torch.inference_mode():
        ref_logits = ref_model(pixel_values=x).logits
        ref_hidden = _hf_outputs(ref_model, x)[0]
    del ref_model
    hf = checkpoints.hf_model(ckpt, dtype=dtype, device="cuda", attn_implementation="eager")
    tri = TritonViT(ckpt.spec, ckpt.local).to(device="cuda", dtype=dtype)
    with torch.inference_mode():
        hf_logits = hf(pixel_values=x.to(dtype)).logits
        hidden, _, logits = tri(x.to(dtype))
    if dtype == torch.float32:
        assert rel_err(logits, ref_logits) <= 1e-4
        assert rel_err(hidden, ref_hidden) <= 1e-4
    else:
        assert rel_err(logits, ref_logits) <= 1.5 * rel_err(hf_logits, ref_logits)
    top1 = (logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item()
    hf_top1 = (hf_logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item()
    assert top1 >= hf_top1 - 0.01
