"""Fused attention vs a float64 softmax(scale * q k^T) v, plus input validation.

CPU shapes are small (the interpreter is slow) but irregular: T = 1, 50, 197 are not multiples
of any block size, d = 80 is padded to 128 inside the kernel. GPU tests (`-m gpu`) add bf16,
the ViT-B/16 shape and T up to 577, d up to 128.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.kernels._common import _FixedConfig
from vitbench.kernels import attention
from vitbench.kernels.attention import attention_cost
from vitbench.numerics import poisoned, rel_err, tolerance

attn_mod = importlib.import_module("vitbench.kernels.attention")  # the module, not the function

# triton 3.6's interpreter turns loop bounds into ints the way numpy 2.4 forbids (2.3 warns).
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim:DeprecationWarning")


def reference(q, k, v, scale: float | None = None) -> torch.Tensor:
    """softmax(scale * q k^T) v in float64 (on q's device)."""
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v


def rand(*shape, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, device=DEVICE).to(dtype)


def fused_qkv(B: int, T: int, H: int, d: int, dtype):
    """q, k, v as views of one [B, T, 3*H*d] QKV buffer: strides (T*3*H*d, d, 3*H*d, 1)."""
    qkv = rand(B, T, 3 * H * d, dtype=dtype)
    q, k, v = qkv.view(B, T, 3, H, d).permute(2, 0, 3, 1, 4)
    return qkv, q, k, v


def check(out, ref, dtype, precision="ieee"):
    err = rel_err(out, ref)
    assert err < tolerance(dtype, precision), f"rel err {err:.3g}"


# --- CPU (interpreter) ------------------------------------------------------------------------

SHAPES = [  # (B, H, T, d)
    (2, 2, 1, 32),  # one key: softmax = 1, out = v
    (2, 2, 50, 32),
    (2, 2, 50, 64),
    (2, 2, 50, 80),  # d not a power of 2
    (1, 2, 197, 64),  # ViT-B/16 sequence
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_float64(shape, dtype):
    q, k, v = (rand(*shape, dtype=dtype) for _ in range(3))
    out = poisoned(shape, dtype, DEVICE)
    got = attention(q, k, v, out=out)
    assert got is out
    check(out, reference(q, k, v), dtype)


def _cfg_id(c) -> str:
    return f"{c.kwargs['BLOCK_M']}x{c.kwargs['BLOCK_N']}w{c.num_warps}s{c.num_stages}"


def _force_config(monkeypatch, cfg) -> None:
    kernel = attn_mod._attention_kernel
    monkeypatch.setattr(attn_mod, "_attention_kernel", _FixedConfig(kernel.fn, cfg))


# (B, H, T_q, T_k, d): ragged query and key ends against every block size, T_q < every BLOCK_M
# (tail programs only), T_q = a multiple of every block (no tail), T_q != T_k, T_k < 16, and a
# head dim padded in registers (80 -> 128)
RAGGED = [(1, 2, 197, 197, 64), (2, 1, 50, 50, 64), (1, 1, 5, 77, 64), (1, 1, 256, 256, 64),
          (1, 1, 130, 19, 64), (1, 1, 37, 5, 64), (1, 1, 41, 23, 80)]
# The interpreter runs a config's blocks only (not its warps or stages): one config per block pair
CPU_CONFIGS = list({(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]): c for c in attn_mod._CONFIGS}.values())


@pytest.mark.parametrize("tail", ["1", "0"], ids=["tail", "padded"])
@pytest.mark.parametrize("cfg", CPU_CONFIGS, ids=_cfg_id)
def test_every_config_handles_ragged_ends(cfg, tail, monkeypatch):
    """Each config forced: full BLOCK_M blocks, then TAIL-row programs for T_q % BLOCK_M rows and
    TAIL-key steps for T_k % BLOCK_N keys (VITBENCH_ATTN_TAIL=0: one more padded block each);
    every row of a poisoned out written, none past T_q."""
    _force_config(monkeypatch, cfg)
    monkeypatch.setenv("VITBENCH_ATTN_TAIL", tail)
    for B, H, T_q, T_k, d in RAGGED:
        q = rand(B, H, T_q, d, dtype=torch.float16)
        k, v = (rand(B, H, T_k, d, dtype=torch.float16) for _ in range(2))
        # out is rows [0, T_q) of a taller poisoned buffer: nothing may land in the rows after
        buf = poisoned((B, H, T_q + 24, d), torch.float16, DEVICE)
        attention(q, k, v, out=buf[:, :, :T_q])
        check(buf[:, :, :T_q], reference(q, k, v), torch.float16)
        assert torch.isnan(buf[:, :, T_q:]).all(), f"wrote past T_q={T_q}"


def test_bad_tail_setting_is_a_user_error(monkeypatch):
    monkeypatch.setenv("VITBENCH_ATTN_TAIL", "off")
    q = rand(1, 1, 20, 16)
    with pytest.raises(VitbenchError, match="VITBENCH_ATTN_TAIL"):
        attention(q, q, q)


@pytest.mark.parametrize("d", [8, 20])
def test_small_odd_head_dims(d):
    """d below tl.dot's minimum of 16 (padded to 16) and d = 20 (padded to 32)."""
    q, k, v = (rand(1, 2, 50, d) for _ in range(3))
    out = attention(q, k, v, out=poisoned(q.shape, q.dtype, DEVICE))
    check(out, reference(q, k, v), torch.float32)


def test_allocates_output_when_none_given():
    q, k, v = (rand(1, 2, 50, 32) for _ in range(3))
    out = attention(q, k, v)
    assert out.shape == q.shape and out.dtype == q.dtype and out.is_contiguous()
    check(out, reference(q, k, v), torch.float32)


def test_custom_scale():
    q, k, v = (rand(2, 2, 50, 32) for _ in range(3))
    out = attention(q, k, v, scale=0.37, out=poisoned(q.shape, q.dtype, DEVICE))
    check(out, reference(q, k, v, 0.37), torch.float32)
    # the scale is really used: the default scale (1/sqrt(32) = 0.177) gives another answer
    assert rel_err(out, reference(q, k, v)) > 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_fused_qkv_views_and_strided_out(dtype):
    """The model's layout: q/k/v read from one QKV buffer, out written as [B, T, H*d]."""
    B, T, H, d = 2, 50, 2, 80
    _, q, k, v = fused_qkv(B, T, H, d, dtype)
    assert q.stride() == (T * 3 * H * d, d, 3 * H * d, 1)
    buf = poisoned((B, T, H, d), dtype, DEVICE)  # [B, T, H, d] contiguous
    out = buf.permute(0, 2, 1, 3)  # [B, H, T, d] view, strides (T*H*d, d, H*d, 1)
    got = attention(q, k, v, out=out)
    assert got.data_ptr() == buf.data_ptr()
    ref = reference(q, k, v)  # [B, H, T, d]
    check(buf.view(B * T, H * d), ref.transpose(1, 2).reshape(B * T, H * d), dtype)


def test_query_and_key_lengths_may_differ():
    q = rand(2, 2, 7, 64)
    k, v = rand(2, 2, 50, 64), rand(2, 2, 50, 64)
    out = attention(q, k, v, out=poisoned(q.shape, q.dtype, DEVICE))
    check(out, reference(q, k, v), torch.float32)


def test_out_may_be_q_itself():
    """Each program reads its q rows before writing the same rows, so in-place on q is safe."""
    q, k, v = (rand(1, 2, 50, 32) for _ in range(3))
    ref = reference(q, k, v)
    got = attention(q, k, v, out=q)
    assert got is q
    check(q, ref, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_large_logits_stay_finite(dtype):
    """q, k x 30: logits of std ~900, far past where exp() overflows fp32 without the max."""
    q, k = (rand(1, 2, 50, 64, dtype=dtype) * 30 for _ in range(2))
    v = rand(1, 2, 50, 64, dtype=dtype)
    raw = (q.double() @ k.double().transpose(-1, -2)) / 8.0
    assert raw.max() > 89  # exp(89) > fp32 max: the test really needs the max subtraction
    out = attention(q, k, v, out=poisoned(q.shape, dtype, DEVICE))
    assert torch.isfinite(out).all()
    check(out, reference(q, k, v), dtype)


def test_tf32_precision_is_accepted_for_fp32():
    q, k, v = (rand(1, 2, 50, 32) for _ in range(3))
    out = attention(q, k, v, precision="tf32", out=poisoned(q.shape, q.dtype, DEVICE))
    check(out, reference(q, k, v), torch.float32, "tf32")


def test_empty_batch_returns_empty():
    q = rand(0, 2, 50, 32)
    assert attention(q, q, q).shape == (0, 2, 50, 32)


def test_attention_cost():
    B, H, T, d = 2, 3, 197, 64
    flops, nbytes = attention_cost(B, H, T, d, 2)
    assert flops == 2 * (2 * B * H * T * T * d)  # q k^T and p v, each 2*T*T*d per head
    tensors = [rand(B, H, T, d, dtype=torch.float16) for _ in range(4)]  # q, k, v, out
    assert nbytes == sum(t.numel() * t.element_size() for t in tensors)


def _bad_cases():
    f32 = lambda *s: rand(*s)  # noqa: E731
    q = f32(1, 2, 10, 32)
    buf = f32(1, 2, 10, 64)
    return {
        "dtype mismatch": (dict(q=q, k=q.half(), v=q), "dtype mismatch"),
        "head dim mismatch": (dict(q=q, k=f32(1, 2, 10, 16), v=f32(1, 2, 10, 16)), "k has shape"),
        "heads mismatch": (dict(q=q, k=q, v=f32(1, 3, 10, 32)), "v has shape"),
        "wrong rank": (dict(q=f32(2, 10, 32), k=q, v=q), "q must have 4 dims"),
        "k/v T mismatch": (dict(q=q, k=f32(1, 2, 12, 32), v=f32(1, 2, 11, 32)), "v has 11 rows"),
        "int dtype": (dict(q=q.to(torch.int32), k=q, v=q), "q has dtype"),
        "fp64 dtype": (dict(q=q, k=q, v=q.double()), "v has dtype"),
        "not a tensor": (dict(q=q.tolist(), k=q, v=q), "q must be a torch.Tensor"),
        "wrong device": (dict(q=q, k=torch.empty(q.shape, device="meta"), v=q), "k is on meta"),
        "last dim strided": (dict(q=buf[..., ::2], k=q, v=q), "q must be contiguous"),
        "head dim too big": (dict(q=f32(1, 1, 3, 264), k=f32(1, 1, 3, 264), v=f32(1, 1, 3, 264)),
                             "head dim"),
        "no keys": (dict(q=q, k=f32(1, 2, 0, 32), v=f32(1, 2, 0, 32)), "no keys"),
        "scale nan": (dict(q=q, k=q, v=q, scale=float("nan")), "scale must be finite"),
        "scale text": (dict(q=q, k=q, v=q, scale="big"), "scale must be a number"),
        "bad precision": (dict(q=q, k=q, v=q, precision="fp8"), "precision"),
        "out shape": (dict(q=q, k=q, v=q, out=f32(1, 2, 11, 32)), "out has shape"),
        "out dtype": (dict(q=q, k=q, v=q, out=q.half()), "dtype mismatch"),
        "out rank": (dict(q=q, k=q, v=q, out=f32(2, 10, 32)), "out must have 4 dims"),
        "out is k": (dict(q=q, k=(k := f32(1, 2, 10, 32)), v=q, out=k), "out overlaps k"),
        "out broadcast": (dict(q=q, k=q, v=q, out=f32(1, 1, 10, 32).expand(1, 2, 10, 32)),
                          "zero stride"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_raise_vitbench_error(case):
    kwargs, match = BAD[case]
    with pytest.raises(VitbenchError, match=match):
        attention(**kwargs)


# --- GPU ---------------------------------------------------------------------------------------

ALL_DTYPES = [torch.bfloat16, torch.float16, torch.float32]
DT_IDS = ["bf16", "fp16", "fp32"]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=DT_IDS)
def test_gpu_vit_b16_batch32(dtype):
    """ViT-B/16 at batch 32: [32, 12, 197, 64] from a fused QKV buffer into a [B*T, 768] out."""
    B, T, H, d = 32, 197, 12, 64
    _, q, k, v = fused_qkv(B, T, H, d, dtype)
    buf = poisoned((B, T, H, d), dtype, DEVICE)
    attention(q, k, v, out=buf.permute(0, 2, 1, 3))
    ref = reference(q, k, v).transpose(1, 2).reshape(B * T, H * d)
    check(buf.view(B * T, H * d), ref, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("d", [32, 64, 80, 128])
@pytest.mark.parametrize("T", [1, 50, 257, 577])
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=DT_IDS)
def test_gpu_shapes(dtype, T, d):
    q, k, v = (rand(2, 3, T, d, dtype=dtype) for _ in range(3))
    out = attention(q, k, v, out=poisoned(q.shape, dtype, DEVICE))
    check(out, reference(q, k, v), dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("d", [8, 200, 256])
def test_gpu_unusual_head_dims(d):
    q, k, v = (rand(2, 3, 197, d, dtype=torch.bfloat16) for _ in range(3))
    out = attention(q, k, v, out=poisoned(q.shape, q.dtype, DEVICE))
    check(out, reference(q, k, v), torch.bfloat16)


@pytest.mark.gpu
def test_gpu_fp32_tf32_and_large_logits():
    q, k, v = (rand(4, 12, 197, 64) for _ in range(3))
    out = attention(q, k, v, precision="tf32", out=poisoned(q.shape, q.dtype, DEVICE))
    check(out, reference(q, k, v), torch.float32, "tf32")
    q, k, v = q.to(torch.bfloat16) * 30, k.to(torch.bfloat16) * 30, v.to(torch.bfloat16)
    out = attention(q, k, v, out=poisoned(q.shape, q.dtype, DEVICE))
    check(out, reference(q, k, v), torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", attn_mod._CONFIGS, ids=_cfg_id)
def test_gpu_every_config_handles_ragged_ends(cfg, monkeypatch):
    """As test_every_config_handles_ragged_ends, in bf16 on the GPU (wgmma for full blocks, mma
    for the 16-row tail programs), at the ViT-B/16 shape and at T = 577 (ViT-B/16 at 384 px)."""
    _force_config(monkeypatch, cfg)
    for B, H, T in [(4, 12, 197), (2, 3, 577), (2, 3, 5)]:
        _, q, k, v = fused_qkv(B, T, H, 64, torch.bfloat16)
        buf = poisoned((B, T + 24, H, 64), torch.bfloat16, DEVICE)
        attention(q, k, v, out=buf[:, :T].permute(0, 2, 1, 3))
        check(buf[:, :T].permute(0, 2, 1, 3), reference(q, k, v), torch.bfloat16)
        assert torch.isnan(buf[:, T:]).all(), f"wrote past T={T}"


@pytest.mark.gpu
def test_gpu_agrees_with_torch_sdpa():
    """Same answer as torch's own fused attention (run in fp32) on the model's layout."""
    _, q, k, v = fused_qkv(8, 197, 12, 64, torch.bfloat16)
    out = attention(q, k, v, scale=0.1)
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), scale=0.1
    )
    check(out, sdpa, torch.bfloat16)


def test_out_is_q_goes_through_a_temporary_so_reruns_see_the_original_q():
    # The GPU autotuner reruns the kernel on the same arguments: writing q in place would corrupt
    # the q that later runs read. Two calls in a row on fresh copies must agree with the reference.
    q, k, v = (torch.randn(1, 2, 23, 16) for _ in range(3))
    ref = torch.softmax(q.double() @ k.double().transpose(-1, -2) / 4.0, -1) @ v.double()
    q_in = q.clone()
    out = attention(q_in, k, v, out=q_in)
    assert out.data_ptr() == q_in.data_ptr()
    assert rel_err(out, ref) < 1e-5


def test_too_many_heads_for_the_grid_is_a_user_error():
    q = torch.randn(1, 65536, 1, 16)
    with pytest.raises(VitbenchError, match="65535"):
        attention(q, q, q)
