"""The GELU forms of the GEMM epilogues, and which one a launch uses (`gelu_form`).

fp32 outputs: `gelu_erf` (exact GELU to ~1e-6). 16-bit outputs: `gelu_hw` (default), the fitted
sigmoid form of `gelu_fit` evaluated with one hardware tanh; VITBENCH_FAST_GELU=0 keeps `gelu_fit`.
"gelu_tanh" epilogues (HF's approximate="tanh") use `gelu_tanh`. `gelu_eval` applies a form element
by element, for the accuracy checks (tests, tools/gelu_probe.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vitbench._backend import INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels._env import env_flag


@triton.jit
def gelu_erf(x):
    # Exact GELU 0.5 * x * (1 + erf(x / sqrt(2))) in fp32, without libdevice's erf: with z = |x|,
    # r = erfc(z / sqrt(2)) = 1 / p(z)^16 (Abramowitz & Stegun 7.1.28, |error| <= 3e-7; the
    # coefficients below carry the 1/sqrt(2)), so gelu = x * (1 - r/2) for x >= 0 and x * r/2
    # below. Max abs error vs float64 on [-12, 12]: about 1e-6 in fp32 (libdevice erf: 4.4e-7);
    # absolute, not relative, in the negative tail where gelu -> 0 (26% of gelu(-6) = -6e-9).
    # +-inf give what torch gives (inf, NaN). Why: 6 FMAs, 4 squarings and one division, where
    # erff's two polynomial branches and exp made the FC1 GEMM's epilogue cost 47% of its wgmma
    # time on an H100 (tools/epilogue_probe.py, ViT-B/16 batch 256, bf16: 0.555 ms with GELU vs
    # 0.378 ms without, 2026-11-27; 0.495 ms with this form).
    z = tl.abs(x)
    p = 5.3829750e-06 * z + 4.8890636e-05
    p = p * z + 3.8003575e-05
    p = p * z + 3.2776263e-03
    p = p * z + 2.1141006e-02
    p = p * z + 4.9867347e-02
    p = p * z + 1.0
    p = p * p
    p = p * p
    p = p * p
    p = p * p  # p^16: inf for huge |x|, and 1 / inf = 0 = erfc there
    half_r = 0.5 / p  # fp32 division compiles to div.full.f32 (approximate, 2 ulp) in triton 3.6
    return x * tl.where(x >= 0, 1.0 - half_r, half_r)


@triton.jit
def gelu_fit(x):
    # GELU for 16-bit outputs under VITBENCH_FAST_GELU=0 (gelu_hw computes the same function with
    # one hardware tanh): x * sigmoid(x * p(x^2)) = x / (1 + 2^(x * q(x^2))), q = -log2(e) * p,
    # with p(t) = 1.5950158 + 0.074011293 t - 0.00070303375 t^2 fitted (minimax, weighted) to
    # logit(Phi(x)) / x for |x| <= 6. Max abs error vs exact GELU (float64): 2.6e-5, at x = 3.1;
    # relative: 2.2e-5 where |gelu| >= 1, 2.1e-4 where >= 0.1 (fp16's half ulp: 2.4e-4 and up,
    # bf16's: 2.0e-3). x^2 is clamped at 36, where p would turn negative near |x| = 11.
    # 5 FMA-pipe ops and one exp2 (MUFU) before the division, against gelu_erf's ~12 and the
    # division: the epilogue runs on the CUDA cores while the tensor cores wait (FC1 at batch
    # 128: 0.052 ms of its 0.24, H100, docs/performance.md step 6).
    t = tl.minimum(x * x, 36.0)
    q = (1.0142636e-03 * t - 1.0677573e-01) * t - 2.3011212
    return x / (1.0 + tl.exp2(x * q))


@triton.jit
def _tanh_mufu(z):
    # tanh.approx.f32: one MUFU.TANH instruction (sm_75+), against gelu_fit's exp2 and division
    # (two MUFU ops; the MUFU pipe issues 16 per clock per SM, an eighth of the FMA pipe's 128).
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [z], dtype=tl.float32,
                                     is_pure=True, pack=1)


@triton.jit
def _tanh_exp(z):
    # The interpreter runs no PTX: tanh(z) = 2 sigmoid(2z) - 1 there, the same function.
    return 2.0 / (1.0 + tl.exp(-2.0 * z)) - 1.0


tanh_approx = _tanh_exp if INTERPRETER else _tanh_mufu


@triton.jit
def gelu_hw(x):
    # gelu_fit's function with one hardware tanh: x * sigmoid(x p(x^2)) = h + h * tanh(x p(x^2) / 2),
    # h = x / 2, p the fit of gelu_fit (halved below). 7 FMA-pipe ops and one MUFU op, against
    # gelu_fit's two MUFU ops (exp2, and the division's reciprocal): FC1's GELU epilogue was bound
    # by the MUFU pipe on an H100 (ViT-B/16 batch 32: about 2.3 us per 128x256 tile, 7-8 outputs
    # per clock per SM, docs/performance.md step 13). Max abs error vs float64 GELU on an H100:
    # 3.0e-5 (the fit's 2.6e-5 plus tanh.approx.f32's own, far below the PTX ISA's 2^-10.987
    # relative; tools/gelu_probe.py).
    t = tl.minimum(x * x, 36.0)
    q = (-3.5151688e-04 * t + 3.7005647e-02) * t + 7.9750790e-01
    h = 0.5 * x
    return h + h * tanh_approx(x * q)


@triton.jit
def gelu(x, FORM: tl.constexpr):
    # The "gelu" epilogues' forms (gelu_form): 0 gelu_erf (fp32 outputs), 1 gelu_fit, 2 gelu_hw.
    if FORM == 2:
        return gelu_hw(x)
    elif FORM == 1:
        return gelu_fit(x)
    else:
        return gelu_erf(x)


FORMS = {"erf": 0, "fit": 1, "hw": 2}  # GELU_FORM values (`gelu` above)
FAST_GELU_ENV = "VITBENCH_FAST_GELU"  # 0: 16-bit GELU epilogues keep gelu_fit (for A/B runs)


def fast_gelu_setting() -> bool:
    """VITBENCH_FAST_GELU as a bool: "0" -> False; unset, "" or "1" -> True; else VitbenchError."""
    return env_flag(FAST_GELU_ENV, "16-bit GELU epilogues with one hardware tanh", default=True)


try:
    _FAST_GELU = fast_gelu_setting()
except VitbenchError:  # reported by the CLI at start (vitbench.cli), here: on
    _FAST_GELU = True


def gelu_form(dtype: torch.dtype) -> int:
    """The GELU_FORM of a "gelu" epilogue writing `dtype`: 0 (gelu_erf) for fp32, else 2 (gelu_hw,
    one hardware tanh), or 1 (gelu_fit) under VITBENCH_FAST_GELU=0 (read at import)."""
    if dtype == torch.float32:
        return FORMS["erf"]
    return FORMS["hw"] if _FAST_GELU else FORMS["fit"]


@triton.jit
def gelu_tanh(x):
    # 0.5 * x * (1 + tanh(u)) == x * sigmoid(2u) = x / (1 + exp(-2u)), u = sqrt(2/pi) * (x +
    # 0.044715 x^3): no tanh needed; exp overflows to inf for very negative x, and x / inf = -0.
    u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return x / (1.0 + tl.exp(-2.0 * u))



@triton.jit
def _gelu_eval_kernel(x_ptr, y_ptr, n, FORM: tl.constexpr, TANH: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    if TANH:
        y = gelu_tanh(x)
    else:
        y = gelu(x, FORM)
    tl.store(y_ptr + offs, y, mask=offs < n)


def gelu_eval(x: torch.Tensor, form: str) -> torch.Tensor:
    """One GELU form ("erf", "fit", "hw" or "tanh") applied element by element to contiguous fp32
    `x`, in fp32, on x's device: what an epilogue computes from its fp32 accumulator."""
    if form not in (*FORMS, "tanh"):
        raise VitbenchError(f"GELU form {form!r}: choose one of {', '.join((*FORMS, 'tanh'))}")
    if x.dtype != torch.float32 or not x.is_contiguous():
        raise VitbenchError("gelu_eval takes a contiguous float32 tensor")
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        _gelu_eval_kernel[(triton.cdiv(n, 4096),)](x, y, n, FORM=FORMS.get(form, 0), TANH=form == "tanh",
                                                   BLOCK=4096)
    return y
