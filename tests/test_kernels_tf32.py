"""TF32 operand rounding: fp32 operands of "tf32" dots are rounded to the nearest TF32 value.

cuBLAS rounds fp32 operands to TF32 (round to nearest, ties away: PTX cvt.rna.tf32.f32) before a
TF32 GEMM; the tensor core fed raw fp32 bits truncates them instead, which doubles the error. So
the kernels round first (`_tiles.round_tf32`). Here (interpreter, CPU):

- the helper equals a torch reference of cvt.rna bit for bit, specials included;
- matmul, bmm, patch_embed and attention with precision="tf32" on fp32 inputs match a float64
  reference computed from TF32-rounded operands to fp32 accumulation error. The interpreter's
  tl.dot is exact fp32 whatever its input_precision, so this shows that every operand of every dot
  is rounded; the distance to the unrounded float64 reference shows the rounding is not a no-op.
- "ieee" dots and 16-bit inputs are left alone.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from vitbench._backend import DEVICE
from vitbench.kernels import attention, bmm, matmul, patch_embed
from vitbench.kernels._tiles import round_tf32, tf32_operand
from vitbench.kernels.attention import _CONFIGS as ATTN_CONFIGS
from vitbench.numerics import rel_err, tolerance

# triton 3.6's interpreter turns loop bounds into ints the way numpy 2.4 forbids (2.3 warns).
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim:DeprecationWarning")

ACC_TOL = 1e-5  # fp32 accumulation error of these small dots (rel, Frobenius)
U32 = 0xFFFFFFFF


# ------------------------------------------------------------------------------ references


def bits_of(x: torch.Tensor) -> torch.Tensor:
    """float32 -> its bit pattern as int64 in [0, 2**32)."""
    return x.contiguous().view(torch.int32).to(torch.int64) & U32


def from_bits(b: torch.Tensor) -> torch.Tensor:
    """int64 bit patterns in [0, 2**32) -> float32."""
    b = torch.where(b >= 2 ** 31, b - 2 ** 32, b)
    return b.to(torch.int32).view(torch.float32)


def round_tf32_ref(x: torch.Tensor) -> torch.Tensor:
    """cvt.rna.tf32.f32 in int64 bit arithmetic: magnitude rounded to 10 mantissa bits, ties away
    from zero (a carry into the exponent is correct rounding, up to inf); NaN -> NaN (quieted)."""
    b = bits_of(x)
    sign, mag = b & 0x80000000, b & 0x7FFFFFFF
    rounded = sign | (((mag + 0x1000) >> 13) << 13)
    return from_bits(torch.where(mag > 0x7F800000, b | 0x400000, rounded))


def round_tf32_arith(x: torch.Tensor) -> torch.Tensor:
    """An independent reference for finite x in float64 arithmetic: |x| / ulp rounded half up."""
    a = x.to(torch.float64).abs()
    e = torch.floor(torch.log2(torch.where(a > 0, a, 1.0))).clamp(min=-126)
    ulp = torch.exp2(e - 10)
    r = torch.floor(a / ulp + 0.5) * ulp  # exact in float64; 2**128 becomes inf in float32
    return (torch.sign(x.to(torch.float64)) * r).to(torch.float32)


def r32(t: torch.Tensor) -> torch.Tensor:
    return round_tf32_ref(t)


# ------------------------------------------------------------------------------ the helper


@triton.jit
def _round_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    x = tl.load(x_ptr + offs, mask=ok, other=0.0)
    tl.store(y_ptr + offs, round_tf32(x), mask=ok)


@triton.jit
def _operand_kernel(x_ptr, y_ptr, n, PRECISION: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    x = tl.load(x_ptr + offs, mask=ok, other=0.0)
    tl.store(y_ptr + offs, tf32_operand(x, PRECISION), mask=ok)


def run_round(x: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    BLOCK = 1024
    _round_kernel[(triton.cdiv(x.numel(), BLOCK),)](x, y, x.numel(), BLOCK=BLOCK)
    return y


SPECIAL_BITS = [
    0x00000000, 0x80000000,  # +-0
    0x7F800000, 0xFF800000,  # +-inf
    0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0xFFFFFFFF,  # quiet NaNs (0xFFFFFFFF + 0x1000 wraps)
    0x7F800001, 0xFF800FFF, 0x7F801000, 0x7F802000,  # NaNs with payload in/at the dropped bits
    0x7F7FFFFF, 0xFF7FFFFF,  # +-FLT_MAX: within half a TF32 ulp of 2**128 -> +-inf
    0x7F7FF000, 0x7F7FEFFF, 0x7F7FE000,  # halfway below 2**128 -> inf; just under; max TF32
    0x00000001, 0x80000001, 0x00000FFF, 0x00001000, 0x00001001, 0x00003000,  # subnormals
    0x007FFFFF, 0x807FF000, 0x00800000,  # largest subnormals round up into the normals
    0x3F800000, 0x3F801000, 0x3F803000, 0x3FFFF000, 0xBFFFF000,  # 1, ties, carry into exponent
    0x3F800FFF, 0x3F801001, 0x3FFFEFFF,  # just under / over halfway
]


def test_round_tf32_specials_bit_exact():
    x = from_bits(torch.tensor(SPECIAL_BITS, dtype=torch.int64))
    got = run_round(x)
    assert torch.equal(bits_of(got), bits_of(round_tf32_ref(x)))
    # spelled out for the cases that matter most
    g = dict(zip(SPECIAL_BITS, bits_of(got).tolist()))
    assert g[0x7F800000] == 0x7F800000 and g[0xFF800000] == 0xFF800000
    assert g[0x7F7FFFFF] == 0x7F800000 and g[0xFF7FFFFF] == 0xFF800000  # FLT_MAX -> inf
    assert g[0x7F7FF000] == 0x7F800000 and g[0x7F7FEFFF] == 0x7F7FE000
    assert g[0x00001000] == 0x00002000 and g[0x00000FFF] == 0  # subnormal tie away / down
    assert g[0x3F801000] == 0x3F802000 and g[0x3FFFF000] == 0x40000000  # tie away, carry
    assert g[0x80000000] == 0x80000000  # -0 keeps its sign
    nan = torch.isnan(x)
    assert torch.isnan(got[nan]).all() and not torch.isnan(got[~nan]).any()
    # NaNs stay NaN even after a tensor core drops the low 13 bits
    assert torch.isnan(from_bits(bits_of(got[nan]) & 0xFFFFE000)).all()


def test_round_tf32_random_bit_exact():
    n = 1 << 15
    raw = torch.randint(0, 2 ** 32, (n,), dtype=torch.int64)  # every class: NaN, inf, subnormal
    halfway = (raw & ~0x1FFF & U32) | 0x1000  # exactly between two TF32 values
    near = (raw & ~0x1FFF & U32) | torch.randint(0x0FFE, 0x1003, (n,))  # around halfway
    sub = raw & 0x807FFFFF  # subnormals of both signs
    normal = torch.randn(n) * torch.exp2(torch.randint(-60, 60, (n,)).float())
    x = torch.cat([from_bits(torch.cat([raw, halfway, near, sub])), normal])
    got = run_round(x)
    assert torch.equal(bits_of(got), bits_of(round_tf32_ref(x)))
    fin = torch.isfinite(x)
    assert torch.equal(bits_of(got[fin]), bits_of(round_tf32_arith(x[fin])))  # both refs agree
    assert (bits_of(got[fin & torch.isfinite(got)]) & 0x1FFF == 0).all()  # TF32 values
    err = (got[fin] - x[fin]).double().abs()
    assert (err <= torch.exp2(torch.floor(torch.log2(x[fin].double().abs())).clamp(min=-126)
                              - 11)).all()  # at most half a TF32 ulp


@pytest.mark.parametrize("dtype,precision,rounds", [
    (torch.float32, "tf32", True),
    (torch.float32, "ieee", False),
    (torch.float16, "tf32", False),  # a 16-bit operand is never rounded, whatever the precision
    (torch.bfloat16, "tf32", False),
], ids=["fp32-tf32", "fp32-ieee", "fp16-tf32", "bf16-tf32"])
def test_tf32_operand_only_rounds_fp32_tf32(dtype, precision, rounds):
    x = torch.randn(3000).to(dtype)
    y = torch.empty_like(x)
    _operand_kernel[(3,)](x, y, x.numel(), PRECISION=precision, BLOCK=1024)
    want = round_tf32_ref(x) if rounds else x
    assert torch.equal(y.view(torch.int16 if dtype != torch.float32 else torch.int32),
                       want.view(torch.int16 if dtype != torch.float32 else torch.int32))


# ------------------------------------------------------------------------------ the kernels


def check_rounded(got, ref_rounded, ref_raw):
    """got matches the float64 result of TF32-rounded operands to fp32 accumulation error, is
    measurably off the unrounded one (rounding happened), and within the tf32 tolerance."""
    err_r, err_raw = rel_err(got, ref_rounded), rel_err(got, ref_raw)
    assert err_r < ACC_TOL, f"rel err vs rounded-operand ref {err_r:.3g}"
    assert err_raw > 10 * ACC_TOL, f"rel err vs unrounded ref only {err_raw:.3g}: no rounding?"
    assert err_raw < tolerance(torch.float32, "tf32"), f"rel err {err_raw:.3g}"


def rand(*shape, scale=1.0):
    return torch.randn(*shape, dtype=torch.float64).mul(scale).to(device=DEVICE,
                                                                 dtype=torch.float32)


@pytest.mark.parametrize("shape_a,N", [((37, 70), 45), ((2, 19, 64), 33)],
                         ids=["ragged-K", "3d-even-K"])
def test_matmul_rounds_both_operands(shape_a, N):
    K = shape_a[-1]
    a, w, bias = rand(*shape_a), rand(N, K, scale=K ** -0.5), rand(N)
    got = matmul(a, w, bias, precision="tf32")

    def ref(a, w):
        return a.double() @ w.double().T + bias.double()  # bias is added in fp32, not rounded

    check_rounded(got, ref(r32(a), r32(w)), ref(a, w))
    # ieee is untouched: it matches the raw reference
    assert rel_err(matmul(a, w, bias, precision="ieee"), ref(a, w)) < ACC_TOL


@pytest.mark.parametrize("transpose_b", [False, True])
def test_bmm_rounds_both_operands(transpose_b):
    a = rand(2, 3, 17, 40)
    b = rand(2, 3, 23, 40) if transpose_b else rand(2, 3, 40, 23)
    scale = 0.37
    got = bmm(a, b, scale=scale, transpose_b=transpose_b, precision="tf32")

    def ref(a, b):
        b = b.double().transpose(-1, -2) if transpose_b else b.double()
        return a.double() @ b * scale

    check_rounded(got, ref(r32(a), r32(b)), ref(a, b))


def test_patch_embed_rounds_both_operands():
    B, C, H, W, p, D = 2, 3, 12, 20, 4, 24
    NP = (H // p) * (W // p)
    pixels, weight = rand(B, C, H, W), rand(D, C, p, p, scale=(C * p * p) ** -0.5)
    bias, pos = rand(D), rand(NP, D)
    got = patch_embed(pixels, weight, bias, pos_embed=pos, precision="tf32")

    def ref(px, wt):
        y = F.conv2d(px.double(), wt.double(), bias.double(), stride=p)
        return y.flatten(2).transpose(1, 2) + pos.double()

    check_rounded(got, ref(r32(pixels), r32(weight)), ref(pixels, weight))


def attention_tf32_ref(q, k, v, block_n):
    """The kernel's online softmax in float64 on TF32-rounded q, k, v, with p rounded to TF32
    block by block as the kernel does (p = exp2(s - running max) of each block_n keys)."""
    q, k, v = (r32(t).double() for t in (q, k, v))
    s = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 * math.log2(math.e))
    m = torch.full(s.shape[:-1], -math.inf, dtype=torch.float64)
    l = torch.zeros_like(m)
    acc = torch.zeros(*s.shape[:-1], v.shape[-1], dtype=torch.float64)
    for start in range(0, s.shape[-1], block_n):
        sb = s[..., start:start + block_n]
        m_new = torch.maximum(m, sb.amax(-1))
        p = torch.exp2(sb - m_new[..., None])
        alpha = torch.exp2(m - m_new)
        l = l * alpha + p.sum(-1)
        p = r32(p.float()).double()  # the dot's operand: rounded like cuBLAS would
        acc = acc * alpha[..., None] + p @ v[..., start:start + block_n, :]
        m = m_new
    return acc / l[..., None]


@pytest.mark.parametrize("shape", [(1, 2, 37, 37, 20), (2, 1, 21, 50, 32)],
                         ids=["T37-d20", "Tq21-Tk50-d32"])
def test_attention_rounds_q_k_p_v(shape):
    B, H, T_q, T_k, d = shape
    q, k, v = rand(B, H, T_q, d), rand(B, H, T_k, d), rand(B, H, T_k, d)
    got = attention(q, k, v, precision="tf32")
    raw = torch.softmax(q.double() @ k.double().transpose(-1, -2) * d ** -0.5, -1) @ v.double()
    block_n = ATTN_CONFIGS[0].kwargs["BLOCK_N"]  # the config the interpreter runs
    check_rounded(got, attention_tf32_ref(q, k, v, block_n), raw)
    assert rel_err(attention(q, k, v, precision="ieee"), raw) < ACC_TOL


def test_attention_rounds_v_and_p_exactly():
    # q = 0: every score is 0, so p = exp2(0) = 1 (a TF32 value) and out = mean of rounded v
    q, k, v = torch.zeros(1, 1, 5, 16), rand(1, 1, 24, 16), rand(1, 1, 24, 16)
    got = attention(q, k, v, precision="tf32")
    want = r32(v).double().mean(-2, keepdim=True).expand(1, 1, 5, 16)
    assert rel_err(got, want) < ACC_TOL
    assert rel_err(got, v.double().mean(-2, keepdim=True).expand(1, 1, 5, 16)) > 10 * ACC_TOL
