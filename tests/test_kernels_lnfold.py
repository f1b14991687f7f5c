"""Layernorm folded into the GEMMs (vitbench.kernels._lnfold): row stats out of one GEMM, the
normalisation inside the next one, against layer_norm + linear in float64."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.kernels._lnfold import LNFold, fold_layernorm, row_stats_buffer
from vitbench.numerics import poisoned, rel_err, tolerance
from tests.test_kernels_gemm import rand

mm = importlib.import_module("vitbench.kernels.matmul")
tma_mod = importlib.import_module("vitbench.kernels.matmul_tma")
KERNELS = {"pointer": mm._matmul_pointer, "tma": tma_mod.matmul_tma}


def chunk_stats(x: torch.Tensor) -> torch.Tensor:
    """[rows, 2, width/32] sums and sums of squares per 32 columns, in float64, of x [..., width]."""
    x = x.double().reshape(-1, x.shape[-1] // 32, 32)
    return torch.stack([x.sum(-1), (x * x).sum(-1)], dim=1)


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("in_place", [False, True], ids=["out", "in-place"])
def test_residual_gemm_stores_row_stats_of_what_it_stored(kernel, dtype, in_place):
    if kernel == "tma" and dtype == torch.float32:
        pytest.skip("the TMA kernel takes 16-bit operands only")
    a, w, b = rand(2, 9, 48, dtype=dtype), rand(96, 48, dtype=dtype), rand(96, dtype=dtype)
    r = rand(2, 9, 96, dtype=dtype)
    r0 = r.clone()
    out = r if in_place else poisoned((2, 9, 96), dtype, DEVICE)
    stats = torch.full((18, 2, 3), float("nan"), device=DEVICE)  # poisoned
    KERNELS[kernel](a, w, b, epilogue="residual", residual=r, out=out, row_stats=stats)
    want = (a.double() @ w.double().T + b.double() + r0.double())
    assert rel_err(out, want) < tolerance(dtype)
    torch.testing.assert_close(stats.double(), chunk_stats(out.float()), rtol=1e-5, atol=1e-4)


def _ln_case(dtype, rows=(2, 9), K=64, N=96, eps=1e-6, shift=0.0):
    x = rand(*rows, K, dtype=dtype) + shift
    gamma, beta = 1 + 0.3 * rand(K, dtype=dtype), 0.2 * rand(K, dtype=dtype)
    w, b = rand(N, K, dtype=dtype, scale=K ** -0.5), rand(N, dtype=dtype)
    y = F.layer_norm(x.double(), (K,), gamma.double(), beta.double(), eps)
    return x, gamma, beta, w, b, eps, y @ w.double().T + b.double()


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("epilogue", ["none", "gelu"])
def test_folded_layernorm_matches_layernorm_then_linear(kernel, dtype, epilogue):
    if kernel == "tma" and dtype == torch.float32:
        pytest.skip("the TMA kernel takes 16-bit operands only")
    x, gamma, beta, w, b, eps, want = _ln_case(dtype, shift=3.0)  # rows with a mean far from 0
    w_f, b_f, colsum = fold_layernorm(gamma, beta, w, b)
    stats = chunk_stats(x).float().contiguous()
    out = poisoned((2, 9, 96), dtype, DEVICE)
    KERNELS[kernel](x, w_f, b_f, epilogue=epilogue, out=out, ln=LNFold(stats, colsum, eps))
    if epilogue == "gelu":
        want = F.gelu(want)
    assert rel_err(out, want) < tolerance(dtype)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_stats_from_one_gemm_feed_the_next(kernel):
    # h += proj(ctx) storing h's row stats; then fc1(layer_norm(h)) from raw h: as unfused
    dtype = torch.float16
    run = KERNELS[kernel]
    h = rand(2, 9, 64, dtype=dtype)
    ctx, wo, bo = rand(2, 9, 64, dtype=dtype), rand(64, 64, dtype=dtype, scale=0.125), rand(64, dtype=dtype)
    _, gamma, beta, w1, b1, eps, _ = _ln_case(dtype, K=64, N=96)
    stats = row_stats_buffer(18, 64, torch.device(DEVICE))
    run(ctx, wo, bo, epilogue="residual", residual=h, out=h, row_stats=stats)
    w_f, b_f, colsum = fold_layernorm(gamma, beta, w1, b1)
    got = run(h, w_f, b_f, epilogue="gelu", ln=LNFold(stats, colsum, eps))
    y = F.layer_norm(h.double(), (64,), gamma.double(), beta.double(), eps)
    assert rel_err(got, F.gelu(y @ w1.double().T + b1.double())) < tolerance(dtype)


def test_matmul_routes_ln_arguments():
    x, gamma, beta, w, b, eps, want = _ln_case(torch.float16)
    w_f, b_f, colsum = fold_layernorm(gamma, beta, w, b)
    got = mm.matmul(x, w_f, b_f, ln=LNFold(chunk_stats(x).float().contiguous(), colsum, eps))
    assert rel_err(got, want) < tolerance(torch.float16)


@pytest.mark.parametrize("bad,match", [
    (lambda s, c: dict(ln=(s, c, 1e-6)), "LNFold"),
    (lambda s, c: dict(ln=LNFold(s[:, :, :1].contiguous(), c, 1e-6)), "ln.stats"),
    (lambda s, c: dict(ln=LNFold(s.double(), c, 1e-6)), "ln.stats"),
    (lambda s, c: dict(ln=LNFold(s, c[:5], 1e-6)), "ln.colsum"),
    (lambda s, c: dict(ln=LNFold(s, c, 0.0)), "eps"),
    (lambda s, c: dict(row_stats=s), "row_stats"),  # [18, 2, 2] for an output 96 wide: wrong
])
def test_bad_ln_arguments_are_refused(bad, match):
    x, gamma, beta, w, b, eps, _ = _ln_case(torch.float16)
    _, _, colsum = fold_layernorm(gamma, beta, w, b)
    stats = chunk_stats(x).float().contiguous()
    with pytest.raises(VitbenchError, match=match):
        mm.matmul(x, w, b, **bad(stats, colsum))


def test_row_stats_need_a_width_multiple_of_32():
    with pytest.raises(VitbenchError, match="multiple of 32"):
        row_stats_buffer(4, 48, torch.device(DEVICE))


def test_fold_layernorm_algebra():
    # LN(x) W^T + b == rstd * (x W'^T - mean * colsum) + b', in float64
    x, gamma, beta, w, b, eps, want = _ln_case(torch.float64)
    w_f, b_f, colsum = fold_layernorm(gamma, beta, w, b)
    mean = x.mean(-1, keepdim=True)
    rstd = (x.var(-1, unbiased=False, keepdim=True) + eps).rsqrt()
    got = rstd * (x @ w_f.T - mean * colsum.double()) + b_f
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _forced(monkeypatch, kernel: str, cfg) -> None:
    """The kernel launches with `cfg` only (what autotuning could pick on a GPU)."""
    from vitbench.kernels._common import _FixedConfig

    if kernel == "pointer":
        monkeypatch.setattr(mm, "_matmul", _FixedConfig(mm._heuristic(mm._matmul_kernel), cfg))
    else:
        monkeypatch.setattr(tma_mod, "_matmul_tma", _FixedConfig(tma_mod._matmul_tma_kernel, cfg))


# configs beyond the first: split-K (the epilogue in the last program only), the TMA kernel's
# unsplit 16-row config with two programs per SM
FORCED = [("pointer", c) for c in mm.SPLIT_K_CONFIGS] + [("tma", c) for c in tma_mod.TMA_CONFIGS]


@pytest.mark.parametrize("kernel,cfg", FORCED, ids=[f"{k}-{i}" for i, (k, _) in enumerate(FORCED)])
def test_several_row_tiles_and_chunks_per_row(monkeypatch, kernel, cfg):
    # K = N = 96: 3 chunks per row (LN_CP2 = 4 > 3, the mask matters); 80 rows: several row tiles
    _forced(monkeypatch, kernel, cfg)
    run, dtype = KERNELS[kernel], torch.float16
    x, gamma, beta, w, b, eps, want = _ln_case(dtype, rows=(80,), K=96, N=96, shift=2.0)
    w_f, b_f, colsum = fold_layernorm(gamma, beta, w, b)
    stats = row_stats_buffer(80, 96, torch.device(DEVICE))
    r = rand(80, 96, dtype=dtype)
    out = run(x, w_f, b_f, epilogue="residual", residual=r, ln=LNFold(chunk_stats(x).float().contiguous(),
                                                                       colsum, eps), row_stats=stats)
    assert rel_err(out, want + r.double()) < tolerance(dtype)
    torch.testing.assert_close(stats.double(), chunk_stats(out.float()), rtol=1e-5, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("batch", [1, 8, 32])
def test_gpu_vit_b16_folded_pair(kernel, batch):
    # The out-projection storing h's row stats in place, then FC1 + GELU from raw h with ln2 folded,
    # at ViT-B/16 sizes (24 chunks per row) with the autotuned configs, against the unfused path.
    if kernel == "tma" and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the TMA kernel needs sm_90")
    dtype = torch.bfloat16
    run = KERNELS[kernel]
    h = rand(batch, 197, 768, dtype=dtype)
    ctx = rand(batch, 197, 768, dtype=dtype)
    wo, bo = rand(768, 768, dtype=dtype, scale=768 ** -0.5), rand(768, dtype=dtype)
    _, gamma, beta, w1, b1, eps, _ = _ln_case(dtype, K=768, N=3072)
    h_ref = h.double() + ctx.double() @ wo.double().T + bo.double()
    stats = row_stats_buffer(batch * 197, 768, h.device)
    run(ctx, wo, bo, epilogue="residual", residual=h, out=h, row_stats=stats)
    assert rel_err(h, h_ref) < tolerance(dtype)
    torch.testing.assert_close(stats.double(), chunk_stats(h.float()), rtol=1e-4, atol=1e-2)
    w_f, b_f, colsum = fold_layernorm(gamma, beta, w1, b1)
    got = run(h, w_f, b_f, epilogue="gelu", ln=LNFold(stats, colsum, eps))
    y = F.layer_norm(h.double(), (768,), gamma.double(), beta.double(), eps)
    assert rel_err(got, F.gelu(y @ w1.double().T + b1.double())) < tolerance(dtype)
