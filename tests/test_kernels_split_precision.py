"""fp32 tensor-core split precisions ("tf32x3", "bf16x3", "bf16x6"; kernels/_common.PRECISIONS).

Triton's own passes split each fp32 operand into two or three tensor-core values and sum the
cross products in fp32. Here:
- every dot launcher (matmul, bmm, attention, patch_embed) takes each mode on fp32 inputs and
  matches float64 within numerics.TOLERANCE on irregular sizes and NaN-poisoned outputs (the
  interpreter computes fp32 dots in fp32 whatever the mode, and knows no "bf16x*": check_precision
  gives it "ieee"); on the GPU the modes bf16x6 and tf32x3 must also be at least as accurate as
  cuBLAS fp32 with TF32 off on the same inputs;
- the GEMM configs offered per mode (prune_by_smem), the roofline's ceiling, and the model
  (TritonViT, the model suite) in the modes.
"""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from vitbench._backend import DEVICE, INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels import attention, bmm, matmul, patch_embed
from vitbench.kernels._common import PRECISIONS, check_precision
from vitbench.numerics import TOLERANCE, poisoned, rel_err
from vitbench.suites import config_base

MM = importlib.import_module("vitbench.kernels.matmul")
SPLITS = ("tf32x3", "bf16x3", "bf16x6")
ACCURATE = ("tf32x3", "bf16x6")  # at least as accurate as cuBLAS fp32 (TF32 off), checked on the GPU


def rand(*shape, scale=1.0):
    return torch.randn(*shape, device=DEVICE) * scale


@pytest.fixture
def no_tf32(monkeypatch):
    # torch's own fp32 matmuls exact: the cuBLAS comparison is against fp32 proper (GPU only: the
    # CPU build has no such switch)
    if not torch.cuda.is_available():
        return
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def test_config_and_kernel_precisions_agree():
    assert config_base.PRECISIONS == PRECISIONS
    assert set(SPLITS) <= set(PRECISIONS) and all(p in TOLERANCE for p in PRECISIONS)


def test_check_precision_maps_each_mode():
    for p in PRECISIONS:
        assert check_precision(p, torch.float16) == "ieee"  # ignored by 16-bit dots
        expect = "ieee" if INTERPRETER and p.startswith("bf16x") else p
        assert check_precision(p, torch.float32) == expect
    with pytest.raises(VitbenchError, match="precision must be one of"):
        check_precision("bf16x9", torch.float32)


def _worse_than_cublas(err: float, torch_err: float, precision: str) -> bool:
    """On the GPU, an ACCURATE mode may not be less accurate than cuBLAS fp32 (2x slack for the
    draw: measured 0.2-0.5x at ViT-B/16 sizes)."""
    return not INTERPRETER and precision in ACCURATE and err > 2 * torch_err


@pytest.mark.parametrize("precision", SPLITS)
@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual"])
def test_matmul_split_modes(precision, epilogue, no_tf32):
    M, N, K = (197, 200, 300) if not INTERPRETER else (37, 24, 40)
    a, w, b = rand(M, K), rand(N, K, scale=K ** -0.5), rand(N, scale=0.1)
    res = rand(M, N) if epilogue == "residual" else None
    ref = a.double() @ w.double().T + b.double()
    ref = F.gelu(ref) if epilogue == "gelu" else ref + res.double() if res is not None else ref
    out = poisoned((M, N), torch.float32, DEVICE)
    matmul(a, w, b, epilogue=epilogue, residual=res, precision=precision, out=out)
    err = rel_err(out, ref)
    assert err <= TOLERANCE[precision]
    t = F.linear(a, w, b)
    t = F.gelu(t) if epilogue == "gelu" else t + res if res is not None else t
    assert not _worse_than_cublas(err, rel_err(t, ref), precision)


@pytest.mark.parametrize("precision", SPLITS)
def test_bmm_attention_patch_embed_split_modes(precision, no_tf32):
    small = INTERPRETER
    # bmm: scores of 2 x 3 heads
    T, d = (19, 16) if small else (197, 64)
    q, k, v = rand(2, 3, T, d), rand(2, 3, T, d), rand(2, 3, T, d)
    out = poisoned((2, 3, T, T), torch.float32, DEVICE)
    bmm(q, k, transpose_b=True, scale=d ** -0.5, precision=precision, out=out)
    ref = (q.double() @ k.double().transpose(-1, -2)) * d ** -0.5
    assert rel_err(out, ref) <= TOLERANCE[precision]
    # attention
    out = poisoned((2, 3, T, d), torch.float32, DEVICE)
    attention(q, k, v, out=out, precision=precision)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    err = rel_err(out, ref)
    assert err <= TOLERANCE[precision]
    assert not _worse_than_cublas(err, rel_err(F.scaled_dot_product_attention(q, k, v), ref), precision)
    # patch embedding: 2 images of 3 x 24 x 40 pixels, 8x8 patches, 48 channels
    P, C = 8, 48
    x, w, b = rand(2, 3, 24, 40), rand(C, 3, P, P, scale=(3 * P * P) ** -0.5), rand(C, scale=0.1)
    emb = patch_embed(x, w, b, precision=precision)
    ref = F.conv2d(x.double(), w.double(), b.double(), stride=P).flatten(2).transpose(1, 2)
    assert rel_err(emb, ref) <= TOLERANCE[precision]


@pytest.mark.parametrize("precision", SPLITS)
def test_launchers_hand_the_mode_to_their_kernels(precision, monkeypatch):
    # what each dot kernel is launched with, as on a GPU (check_precision without the
    # interpreter's "ieee" stand-in); the launches are recorded, not run
    from vitbench.kernels import _common

    monkeypatch.setattr(_common, "INTERPRETER", False)
    seen = []

    def record(self, grid):
        def launch(*args, **kwargs):
            seen.append((id(self), kwargs.get("PRECISION", kwargs.get("DOT_PRECISION"))))
        return launch

    monkeypatch.setattr(_common._FixedConfig, "__getitem__", record)
    a, w = rand(9, 16), rand(8, 16)
    matmul(a, w, precision=precision)
    bmm(rand(2, 5, 16), rand(2, 16, 7), precision=precision)
    q = rand(1, 2, 9, 16)
    attention(q, q, q, precision=precision)
    patch_embed(rand(1, 3, 16, 16), rand(8, 3, 8, 8), None, precision=precision)
    kernels = [k for k, _ in seen]
    assert len(seen) == 4 and len(set(kernels)) == 4, seen  # four launchers, four kernels
    assert all(p == precision for _, p in seen), seen
    # 16-bit operands: the mode does not apply
    seen.clear()
    matmul(a.half(), w.half(), precision=precision)
    assert [p for _, p in seen] == ["ieee"]


def test_roofline_precision_per_provider():
    from vitbench.bench.case import Provider
    from vitbench.bench.runner import _provider_precision
    from vitbench.suites.model import ModelCase

    for prec in ("bf16x6", "ieee", "tf32", ""):
        case = ModelCase(suite="model", op="m", case="b1", dtype="fp32" if prec else "bf16",
                         precision=prec, shape={"B": 1}, inputs=None, reference=None)
        assert _provider_precision(Provider("triton", None), case) == prec
        # torch and HF run exact fp32 in split-mode rows (TF32 off), TF32 in tf32 rows
        assert _provider_precision(Provider("hf-sdpa", None), case) == ("ieee" if prec == "bf16x6" else prec)


def test_prune_offers_split_configs_only_to_split_modes(monkeypatch):
    cfg = MM.matmul_config
    split_cfg, big4, small4, fp32_cfg = cfg(128, 128, 32, 4, 8), cfg(128, 64, 32, 3, 4), cfg(64, 64, 32, 3, 4), \
        cfg(128, 128, 16, 3, 8)
    monkeypatch.setattr(MM, "SPLIT_PRECISION_CONFIGS", [split_cfg])
    monkeypatch.setattr(MM, "GEMM_CONFIGS", [big4, small4])
    monkeypatch.setattr(MM, "FP32_CONFIGS", [fp32_cfg])
    configs = [big4, small4, fp32_cfg, split_cfg]

    def kept(dtype, precision):
        args = {"a_ptr": torch.empty(1, dtype=dtype)}
        return MM.prune_by_smem(configs, args, M=6304, N=768, K=768, PRECISION=precision)

    # split modes: no 4-warp GEMM_CONFIGS tile above 64x64 (they spill with the split copies)
    assert kept(torch.float32, "bf16x6") == [small4, fp32_cfg, split_cfg]
    assert kept(torch.float32, "tf32x3") == [small4, fp32_cfg, split_cfg]
    assert kept(torch.float32, "ieee") == [big4, small4, fp32_cfg]
    assert kept(torch.float32, "tf32") == [big4, small4, fp32_cfg]
    assert kept(torch.bfloat16, "ieee") == [big4, small4]


@pytest.mark.parametrize("precision", ["bf16x6", "tf32x3"])
def test_tiny_vit_in_split_modes_matches_hf(precision):
    from vitbench.model import checkpoints
    from vitbench.model.configs import hf_config
    from vitbench.model.modules import TritonViT

    ckpt = checkpoints.random_weights(hf_config("vit-tiny-test"), seed=5, head=True)
    hf = checkpoints.hf_model(ckpt, dtype=torch.float64, device=DEVICE, attn_implementation="eager")
    x = torch.rand(2, ckpt.spec.channels, ckpt.spec.image_h, ckpt.spec.image_w, device=DEVICE) * 2 - 1
    tri = TritonViT(ckpt.spec, ckpt.local, precision=precision).to(device=DEVICE)
    with torch.inference_mode():
        ref = hf(pixel_values=x.double()).logits
        logits = tri(x)[2]
    assert rel_err(logits, ref) <= 1e-4


def test_model_plan_labels_split_mode_rows():
    from vitbench.suites.model import plan_model

    plan = plan_model(batch="1", dtype="fp32", precision="ieee,bf16x6", providers="triton,hf-sdpa")
    assert sorted({c.precision for c in plan.cases}) == ["bf16x6", "ieee"]
    assert all(c.precision_kernels == c.precision for c in plan.cases)
    with pytest.raises(VitbenchError, match="--precision"):
        plan_model(batch="1", dtype="fp32", precision="bf16x9")


# --- GPU: ViT-B/16 sizes --------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("precision", SPLITS)
def test_gpu_split_modes_all_launchers(precision, no_tf32):
    # the CPU tests above with the sizes and the cuBLAS comparison that only mean something here
    test_matmul_split_modes(precision, "gelu", None)
    test_bmm_attention_patch_embed_split_modes(precision, None)
    M, N, K = 1000, 200, 300  # bmm: 3 batches, each mode at least as accurate as its tolerance says
    a, b = rand(3, M, K), rand(3, K, N)
    out = poisoned((3, M, N), torch.float32, DEVICE)
    bmm(a, b, precision=precision, out=out)
    ref = a.double() @ b.double()
    err, cublas = rel_err(out, ref), rel_err(torch.bmm(a, b), ref)
    assert err <= TOLERANCE[precision]
    assert not _worse_than_cublas(err, cublas, precision)



@pytest.mark.gpu
@pytest.mark.parametrize("precision", ACCURATE)
@pytest.mark.parametrize("name,N,K,epilogue", [("qkv", 2304, 768, "none"), ("fc2", 768, 3072, "residual")])
def test_gpu_vit_gemms_split_modes_beat_cublas_fp32_error(precision, name, N, K, epilogue, no_tf32):
    M = 8 * 197 + 5
    a, w, b = rand(M, K), rand(N, K, scale=K ** -0.5), rand(N, scale=0.1)
    res = rand(M, N) if epilogue == "residual" else None
    ref = a.double() @ w.double().T + b.double() + (res.double() if res is not None else 0)
    out = poisoned((M, N), torch.float32, DEVICE)
    matmul(a, w, b, epilogue=epilogue, residual=res, precision=precision, out=out)
    cublas = F.linear(a, w, b) + (res if res is not None else 0)
    assert rel_err(out, ref) <= rel_err(cublas, ref)  # measured 0.2-0.5x cuBLAS's (H100)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ACCURATE)
def test_gpu_vit_b16_split_modes_match_hf(precision, no_tf32):
    from vitbench.model import checkpoints
    from vitbench.model.configs import hf_config
    from vitbench.model.modules import TritonViT

    ckpt = checkpoints.random_weights(hf_config("vit-base-patch16-224"))
    ref_model = checkpoints.hf_model(ckpt, dtype=torch.float64, device="cuda", attn_implementation="eager")
    hf = checkpoints.hf_model(ckpt, device="cuda", attn_implementation="sdpa")
    x = torch.rand(16, 3, 224, 224, device="cuda") * 2 - 1
    tri = TritonViT(ckpt.spec, ckpt.local, precision=precision).to(device="cuda")
    with torch.inference_mode():
        ref = ref_model(pixel_values=x.double()).logits
        hf_err = rel_err(hf(pixel_values=x).logits, ref)
        err = rel_err(tri(x)[2], ref)
    assert err <= 1e-4 and err <= 2 * hf_err
