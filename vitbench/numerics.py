"""Error measures shared by tests, the correctness gate of the suites and the model checks."""

from __future__ import annotations

import math

import torch

# ||out - ref|| / ||ref|| limits, by how the output was computed.
# The split modes (kernels/_common.PRECISIONS), measured on an H100 at ViT-B/16 batch 32
# (d048594, tools/fp32_probe.py, random normal operands, K = 768 / 3072): bf16x6 1.1-1.5e-7,
# tf32x3 2.1-2.4e-7 (cuBLAS fp32 without TF32: 4.9-9.9e-7), bf16x3 4.4e-6.
TOLERANCE = {"ieee": 1e-5, "tf32": 1e-3, "tf32x3": 1e-5, "bf16x6": 1e-5, "bf16x3": 1e-4,
             torch.float16: 1e-2, torch.bfloat16: 1e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative Frobenius error in float64; NaN or inf anywhere in `out` gives inf."""
    if out.shape != ref.shape:
        raise ValueError(f"shape mismatch: out {tuple(out.shape)} vs ref {tuple(ref.shape)}")
    o = out.detach().to(device="cpu", dtype=torch.float64)
    r = ref.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(o).all():
        return math.inf
    denom = torch.linalg.vector_norm(r).item()
    num = torch.linalg.vector_norm(o - r).item()
    return num / denom if denom > 0 else num


def tolerance(dtype: torch.dtype, precision: str = "ieee") -> float:
    """The rel_err limit for an output computed in `dtype` (fp32 by its matmul precision)."""
    if dtype == torch.float32:
        return TOLERANCE[precision]
    return TOLERANCE[dtype]


def poisoned(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """An output buffer filled with NaN, so any element a kernel fails to write is caught."""
    return torch.full(shape, float("nan"), dtype=dtype, device=device)
