"""TF32-exact operands for the TMA kernel's TF32 GEMMs (`matmul(..., tf32_exact=True)`).

The TMA kernel's TF32 wgmma reads its tiles from shared memory and drops the low 13 mantissa bits
(truncation: on a ViT-B/16 forward, 1.5e-3 logits error against HF's 8.9e-4, H200, 2026-11-28).
So the model stores every GEMM input already rounded: the producers' `tf32_out` (layernorm,
attention, the matmul epilogues) and the weights once (`_common.round_tf32_`). Here (CPU):

- `round_tf32_` equals the bit-level reference of cvt.rna (tests/test_kernels_tf32.py), specials
  included, and NaNs stay NaN after the tensor core's truncation;
- each producer's tf32_out output is, bit for bit, its plain output rounded (16-bit: unchanged);
- the model in precision "tf32" passes tf32_exact only with operands that hold TF32 values, and
  its forward still matches HF.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from gpu_vit import vit_b16_fp32
from tests.test_kernels_matmul_tma import make
from tests.test_model_numerics import _pixels
from tests.test_kernels_tf32 import SPECIAL_BITS, bits_of, from_bits, round_tf32_ref
from vitbench._backend import DEVICE
from vitbench.kernels import EPILOGUES, attention, layernorm, matmul
from vitbench.kernels._common import _FixedConfig, round_tf32_

tma_mod = importlib.import_module("vitbench.kernels.matmul_tma")
modules = importlib.import_module("vitbench.model.modules")

pytestmark = [pytest.mark.usefixtures("fresh_gemm_choices"),
              pytest.mark.filterwarnings("ignore:Conversion of an array with ndim:DeprecationWarning")]
F32 = torch.float32


def is_tf32(t: torch.Tensor) -> bool:
    """Every element a TF32 value: low 13 mantissa bits zero (NaNs aside)."""
    t = t.detach().float().contiguous()
    return bool(((bits_of(t) & 0x1FFF) == 0)[~torch.isnan(t)].all())


def assert_rounded_copy(got: torch.Tensor, plain: torch.Tensor):
    """got == plain rounded to TF32, bit for bit, and the rounding changed something."""
    assert torch.equal(bits_of(got), bits_of(round_tf32_ref(plain)))
    assert is_tf32(got) and not is_tf32(plain)


# ------------------------------------------------------------------------------ round_tf32_


def test_round_tf32_inplace_matches_cvt_rna():
    n = 1 << 14
    raw = torch.randint(0, 2 ** 32, (n,), dtype=torch.int64)
    halfway = (raw & ~0x1FFF & 0xFFFFFFFF) | 0x1000
    x = from_bits(torch.cat([torch.tensor(SPECIAL_BITS, dtype=torch.int64), raw, halfway]))
    want = round_tf32_ref(x)
    got = x.clone()
    assert round_tf32_(got) is got
    assert torch.equal(bits_of(got), bits_of(want))
    nan = torch.isnan(x)
    assert torch.isnan(from_bits(bits_of(got[nan]) & 0xFFFFE000)).all()  # NaN after truncation too


def test_round_tf32_inplace_leaves_16_bit_alone():
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.randn(100).to(dtype)
        before = x.clone()
        assert round_tf32_(x) is x and torch.equal(x, before)


# ------------------------------------------------------------------------------ producers


def test_layernorm_tf32_out():
    x = torch.randn(7, 3, 40, device=DEVICE)
    w, b = torch.randn(40, device=DEVICE), torch.randn(40, device=DEVICE)
    assert_rounded_copy(layernorm(x, w, b, 1e-6, tf32_out=True), layernorm(x, w, b, 1e-6))
    h = torch.float16
    assert torch.equal(layernorm(x.to(h), w.to(h), b.to(h), tf32_out=True), layernorm(x.to(h), w.to(h), b.to(h)))


def test_layernorm_tf32_out_looped_rows(monkeypatch):
    monkeypatch.setattr(importlib.import_module("vitbench.kernels.layernorm"), "MAX_SINGLE_BLOCK", 16)
    x, w, b = torch.randn(5, 50), torch.randn(50), torch.randn(50)
    assert_rounded_copy(layernorm(x, w, b, tf32_out=True), layernorm(x, w, b))


@pytest.mark.parametrize("precision", ["tf32", "ieee"])
def test_attention_tf32_out(precision):
    # a strided output, as the model's [B, T, H, d] buffer seen as [B, H, T, d]
    q, k, v = (torch.randn(2, 3, 21, 16, device=DEVICE) for _ in range(3))
    plain = attention(q, k, v, precision=precision)
    ctx = torch.empty(2, 21, 3, 16, device=DEVICE)
    got = attention(q, k, v, precision=precision, tf32_out=True, out=ctx.permute(0, 2, 1, 3))
    assert_rounded_copy(got, plain)


@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_matmul_pointer_tf32_out(epilogue):
    a, w, bias, res, _ = make((2, 19, 40), 24, F32, epilogue)
    plain = matmul(a, w, bias, epilogue=epilogue, residual=res, precision="tf32")
    got = matmul(a, w, bias, epilogue=epilogue, residual=res, precision="tf32", tf32_out=True)
    assert_rounded_copy(got, plain)


@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual"])
def test_matmul_tma_tf32_out(monkeypatch, epilogue):
    cfg = tma_mod.TMA_CONFIGS[0]  # the interpreter runs one fixed config
    monkeypatch.setattr(tma_mod, "_matmul_tma", _FixedConfig(tma_mod._matmul_tma_kernel, cfg))
    a, w, bias, res, _ = make((37, 48), 40, F32, epilogue)
    kw = dict(epilogue=epilogue, residual=res, precision="tf32")
    assert_rounded_copy(tma_mod.matmul_tma(a, w, bias, tf32_out=True, **kw), tma_mod.matmul_tma(a, w, bias, **kw))


def test_matmul_tf32_out_keeps_exact_fp32_on_a_rounding_kernel():
    # an "ieee" call with tf32_out: still exact products, only the stored value rounded
    a, w, bias, _, _ = make((9, 32), 16, F32, "none")
    assert_rounded_copy(matmul(a, w, bias, tf32_out=True), matmul(a, w, bias))


# ------------------------------------------------------------------------------ the model


def _tiny(precision: str):
    from vitbench.model import checkpoints
    from vitbench.model.configs import hf_config

    ckpt = checkpoints.random_weights(hf_config("vit-tiny-test"))
    return ckpt, modules.TritonViT(ckpt.spec, ckpt.local, precision=precision).to(DEVICE)


def test_tf32_model_passes_tf32_exact_only_with_tf32_operands(monkeypatch):
    ckpt, vit = _tiny("tf32")
    calls = []
    real = modules.matmul

    def spy(a, w, *args, **kwargs):
        if kwargs.get("tf32_exact"):
            assert is_tf32(a) and is_tf32(w), "tf32_exact with an operand that is not TF32"
        calls.append((kwargs.get("tf32_exact", False), kwargs.get("tf32_out", False)))
        return real(a, w, *args, **kwargs)

    monkeypatch.setattr(modules, "matmul", spy)
    px = _pixels(2, vit.spec)
    with torch.inference_mode():
        vit(px)
    layers = ckpt.spec.layers
    assert calls.count((True, False)) == 3 * layers  # QKV, out-projection, FC2
    assert calls.count((True, True)) == layers  # FC1 (its GELU output feeds FC2)
    assert len(calls) == 4 * layers + 1  # + the classifier, on the pointer kernel (rounds itself)


def test_tf32_model_weights_rounded_after_every_cast():
    ckpt, vit = _tiny("tf32")
    blk = vit.blocks[0]
    names = ("qkv_w", "o_w", "fc1_w", "fc2_w")
    assert all(is_tf32(getattr(blk, n)) for n in names)
    assert not is_tf32(ckpt.local["blocks.0.fc1.weight"])  # the checkpoint's own copy untouched
    vit.double()  # float64: left alone (not an fp32 TF32 operand) ...
    vit.blocks[0].fc1_w.add_(1e-9)
    vit.float()  # ... and rounded again when cast back
    assert all(is_tf32(getattr(blk, n)) for n in names)
    _, ieee = _tiny("ieee")
    assert not is_tf32(ieee.blocks[0].fc1_w)
    vit.load_state_dict(ieee.state_dict())  # copies unrounded values in place ...
    assert all(is_tf32(getattr(blk, n)) for n in names)  # ... rounded again by the hook
    assert torch.equal(blk.o_w, round_tf32_(ieee.blocks[0].o_w.clone()))


def test_tf32_model_matches_hf():
    from vitbench.model import checkpoints
    from vitbench.numerics import rel_err

    ckpt, vit = _tiny("tf32")
    hf = checkpoints.hf_model(ckpt, device=DEVICE, dtype=torch.float64, attn_implementation="eager")
    px = _pixels(2, vit.spec)
    with torch.inference_mode():
        want = hf(pixel_values=px.double()).logits
        got = vit(px, logits_only=True)[2]
    assert rel_err(got, want) < 1e-3


# ------------------------------------------------------------------------------ GPU


@pytest.mark.gpu
def test_gpu_vit_b16_tf32_forward_on_the_tma_kernel(monkeypatch):
    """ViT-B/16 in precision "tf32" with every eligible GEMM forced onto the TMA kernel (batch 32:
    6,304 rows): the logits error against HF float64 is HF's own TF32 level (H200, 2026-11-28:
    8.9e-4 for HF SDPA, 9.1e-4 for the pointer kernel, 1.5e-3 when the TMA kernel truncated)."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the TMA path needs compute capability >= 9 (Hopper)")
    from vitbench.numerics import rel_err

    monkeypatch.setenv("VITBENCH_TF32_TMA", "1")
    monkeypatch.setattr(importlib.import_module("vitbench.kernels.matmul"), "MODE", "tma")
    calls = []
    real = tma_mod.matmul_tma
    monkeypatch.setattr(tma_mod, "matmul_tma", lambda *a, **k: calls.append(a[0].dtype) or real(*a, **k))
    forward, x, want = vit_b16_fp32(32, precision="tf32")
    got = forward(x)[2]
    assert calls.count(torch.float32) >= 4 * 11  # every layer's GEMMs (the last one's on 32 rows aside)
    err = rel_err(got, want)
    assert err < 1.1e-3, f"logits rel err {err:.3g}"
