"""add, layernorm (+ add_layernorm) and softmax against float64 references.

CPU runs go through the Triton interpreter (small, irregular shapes, fp32 + fp16); the `gpu`
tests repeat them in bf16/fp16/fp32 at ViT-B/16 batch-32 shapes and long rows.
"""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.kernels import add, add_layernorm, layernorm, softmax
from vitbench.numerics import poisoned, rel_err, tolerance

add_mod = importlib.import_module("vitbench.kernels.add")
ln_mod = importlib.import_module("vitbench.kernels.layernorm")
sm_mod = importlib.import_module("vitbench.kernels.softmax")

# The interpreter itself warns when a kernel loops `range(0, n_cols, BLOCK)` (upstream, harmless).
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")

CPU_DTYPES = [torch.float32, torch.float16]
GPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def rand(*shape, dtype=torch.float32, scale=1.0, shift=0.0, device=DEVICE):
    return (torch.randn(shape, dtype=torch.float64) * scale + shift).to(device=device, dtype=dtype)


def ln_ref(x, w, b, eps):
    return F.layer_norm(x.double(), (x.shape[-1],), w.double(), b.double(), eps)


def sm_ref(x, scale=1.0):
    return torch.softmax(x.double() * scale, dim=-1)


def assert_close(out, ref, dtype):
    err = rel_err(out, ref)
    assert err < tolerance(dtype), f"rel err {err:.3e} >= {tolerance(dtype):.0e} ({dtype})"


# ----------------------------------------------------------------------------------------- add

ADD_SHAPES = [
    ((3, 197, 1000), (1, 197, 1000)),
    ((5, 77, 33), (33,)),
    ((4, 7, 5), (4, 7, 5)),  # same shape: no broadcast
    ((2, 3, 17), (1, 1, 17)),
    ((37,), (1,)),
    ((2, 9), ()),  # 0-dim y
]


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("xs,ys", ADD_SHAPES)
def test_add_matches_reference(xs, ys, dtype):
    x, y = rand(*xs, dtype=dtype), rand(*ys, dtype=dtype)
    out = poisoned(xs, dtype, DEVICE)
    got = add(x, y, out=out)
    assert got is out and got.dtype == dtype
    assert_close(out, x.double() + y.double(), dtype)
    fresh = add(x, y)
    assert fresh.shape == x.shape and fresh.dtype == dtype
    assert_close(fresh, x.double() + y.double(), dtype)


def test_add_in_place():
    x, y = rand(6, 11, 19), rand(11, 19)
    ref = x.double() + y.double()
    add(x, y, out=x)
    assert_close(x, ref, torch.float32)


def test_add_fp16_rounds_like_torch():
    x, y = rand(3, 50, 41, dtype=torch.float16, scale=100), rand(50, 41, dtype=torch.float16)
    assert torch.equal(add(x, y), x + y)


def test_empty_inputs():
    assert add(rand(0, 4), rand(4)).shape == (0, 4)
    assert layernorm(rand(0, 4), rand(4), rand(4)).shape == (0, 4)
    assert layernorm(rand(3, 0), rand(0), rand(0)).shape == (3, 0)
    assert [t.shape for t in add_layernorm(rand(0, 4), rand(0, 4), rand(4), rand(4))] == [(0, 4)] * 2
    assert softmax(rand(2, 0, 5)).shape == (2, 0, 5)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (torch.ones(4, 5, dtype=torch.int32), torch.ones(5, dtype=torch.int32)), "x has dtype"),
        (lambda: (rand(4, 5), torch.ones(5, dtype=torch.float64)), "y has dtype"),
        (lambda: (rand(4, 5), rand(5, dtype=torch.float16)), "dtype mismatch"),
        (lambda: (torch.empty(4, 5, device="meta"), rand(5)), "x is on meta"),
        (lambda: (rand(4, 5), torch.empty(5, device="meta")), "y is on meta"),
        (lambda: (rand(3, 4, 5), rand(4, 6)), "suffix"),
        (lambda: (rand(3, 4, 5), rand(2, 4, 5)), "suffix"),
        (lambda: (rand(4, 5), rand(1, 4, 5)), "more dims"),
        (lambda: (rand(5, 4).t(), rand(5)), "x must be contiguous"),
        (lambda: (rand(4, 5), rand(10)[::2]), "y must be contiguous"),
        (lambda: ([1.0, 2.0], rand(2)), "x must be a torch.Tensor"),
    ],
)
def test_add_rejects_bad_inputs(make, match):
    x, y = make()
    with pytest.raises(VitbenchError, match=match):
        add(x, y)


@pytest.mark.parametrize(
    "out,match",
    [
        (lambda: poisoned((4, 6), torch.float32, DEVICE), "out has shape"),
        (lambda: poisoned((4, 5), torch.float16, DEVICE), "out has dtype"),
        (lambda: poisoned((5, 4), torch.float32, DEVICE).t(), "out must be contiguous"),
    ],
)
def test_add_rejects_bad_out(out, match):
    with pytest.raises(VitbenchError, match=match):
        add(rand(4, 5), rand(5), out=out())


# ----------------------------------------------------------------------------------- layernorm

LN_SHAPES = [(3, 768), (2, 5, 1000), (7, 1), (1, 1000), (2, 1, 3, 300)]


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("shape", LN_SHAPES)
def test_layernorm_matches_reference(shape, dtype):
    D = shape[-1]
    x = rand(*shape, dtype=dtype, scale=3.0, shift=0.7)
    w, b = rand(D, dtype=dtype, shift=1.0), rand(D, dtype=dtype)
    out = poisoned(shape, dtype, DEVICE)
    assert layernorm(x, w, b, out=out) is out
    assert_close(out, ln_ref(x, w, b, 1e-5), dtype)


@pytest.mark.parametrize("dtype", CPU_DTYPES)
def test_layernorm_stats_in_fp32(dtype):
    # A large common offset: in fp16 a row sum of 384 * 200 overflows (max 65504), so fp16
    # statistics would give inf/NaN. In fp32 the offset (50 / spread 1) costs what torch's own
    # fp32 layernorm loses (~2e-6), within the 1e-5 limit.
    shift = 200.0 if dtype == torch.float16 else 50.0
    x = rand(4, 384, dtype=dtype, scale=2.0 if dtype == torch.float16 else 1.0, shift=shift)
    w, b = rand(384, dtype=dtype), rand(384, dtype=dtype)
    assert_close(layernorm(x, w, b), ln_ref(x, w, b, 1e-5), dtype)


def test_layernorm_eps_changes_output():
    x = rand(5, 200, scale=0.3)  # variance ~0.09: eps=0.5 dominates it
    w, b = rand(200, shift=1.0), rand(200)
    small, big = layernorm(x, w, b, 1e-5), layernorm(x, w, b, eps=0.5)
    assert_close(small, ln_ref(x, w, b, 1e-5), torch.float32)
    assert_close(big, ln_ref(x, w, b, 0.5), torch.float32)
    assert rel_err(big, ln_ref(x, w, b, 1e-5)) > 0.1


def test_layernorm_strided_rows_and_out():
    D = 300
    w, b = rand(D), rand(D)
    base = rand(6, D + 13)
    x = base[:, 5:5 + D]  # rows 313 elements apart
    out_base = poisoned((6, D + 7), torch.float32, DEVICE)
    out = out_base[:, :D]
    layernorm(x, w, b, out=out)
    assert_close(out, ln_ref(x, w, b, 1e-5), torch.float32)
    assert torch.isnan(out_base[:, D:]).all()  # nothing written outside the view
    t = rand(2, 4, 3, D)[:, 1:3]  # leading dims not mergeable into one row stride
    assert_close(layernorm(t, w, b), ln_ref(t, w, b, 1e-5), torch.float32)


def test_layernorm_in_place():
    x, w, b = rand(9, 130), rand(130), rand(130)
    ref = ln_ref(x, w, b, 1e-5)
    layernorm(x, w, b, out=x)
    assert_close(x, ref, torch.float32)


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("shape", [(3, 768), (2, 3, 1000), (5, 1)])
def test_add_layernorm_both_outputs(shape, dtype):
    D = shape[-1]
    x, r = rand(*shape, dtype=dtype, scale=2.0), rand(*shape, dtype=dtype, shift=0.5)
    w, b = rand(D, dtype=dtype, shift=1.0), rand(D, dtype=dtype)
    s, out = add_layernorm(x, r, w, b, eps=1e-6)
    assert s.shape == out.shape == x.shape and s.dtype == out.dtype == dtype
    assert torch.equal(s, x + r)  # fp32 sum rounded once, as torch does
    assert_close(out, ln_ref(x.double() + r.double(), w, b, 1e-6), dtype)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("dtype", CPU_DTYPES)
def test_layernorm_looped_path(monkeypatch, fused, dtype):
    monkeypatch.setattr(ln_mod, "MAX_SINGLE_BLOCK", 64)  # rows of 1000 and 130 loop over chunks
    for shape in [(3, 1000), (4, 130)]:
        D = shape[-1]
        x, r = rand(*shape, dtype=dtype, scale=2.0, shift=3.0), rand(*shape, dtype=dtype)
        w, b = rand(D, dtype=dtype), rand(D, dtype=dtype)
        if fused:
            s, out = add_layernorm(x, r, w, b)
            assert torch.equal(s, x + r)
            assert_close(out, ln_ref(x.double() + r.double(), w, b, 1e-5), dtype)
        else:
            out = poisoned(shape, dtype, DEVICE)
            layernorm(x, w, b, out=out)
            assert_close(out, ln_ref(x, w, b, 1e-5), dtype)


def _ln_args(**over):
    args = dict(x=rand(4, 8), weight=rand(8), bias=rand(8))
    args.update({k: v() for k, v in over.items()})
    return args


@pytest.mark.parametrize(
    "over,match",
    [
        (dict(x=lambda: torch.ones(4, 8, dtype=torch.int32)), "x has dtype"),
        (dict(x=lambda: torch.ones(4, 8, dtype=torch.float64)), "x has dtype"),
        (dict(x=lambda: torch.empty(4, 8, device="meta")), "x is on meta"),
        (dict(x=lambda: rand(8, 4).t()), "x must be contiguous in its last dim"),
        (dict(x=lambda: torch.tensor(1.0)), "at least 1 dim"),
        (dict(weight=lambda: rand(7)), "weight has shape"),
        (dict(weight=lambda: rand(1, 8)), "weight must have 1 dims"),
        (dict(bias=lambda: rand(9)), "bias has shape"),
        (dict(bias=lambda: rand(8, dtype=torch.float16)), "dtype mismatch"),
        (dict(weight=lambda: torch.empty(8, device="meta")), "weight is on meta"),
    ],
)
def test_layernorm_rejects_bad_inputs(over, match):
    a = _ln_args(**over)
    with pytest.raises(VitbenchError, match=match):
        layernorm(a["x"], a["weight"], a["bias"])


def test_layernorm_rejects_bad_eps_and_out():
    x, w, b = rand(4, 8), rand(8), rand(8)
    for eps in (-1.0, float("nan"), "1e-5"):
        with pytest.raises(VitbenchError, match="eps"):
            layernorm(x, w, b, eps)
    with pytest.raises(VitbenchError, match="out has shape"):
        layernorm(x, w, b, out=rand(4, 9))
    with pytest.raises(VitbenchError, match="out has dtype"):
        layernorm(x, w, b, out=rand(4, 8, dtype=torch.float16))
    with pytest.raises(VitbenchError, match="out .* cannot be viewed as rows"):
        layernorm(rand(2, 3, 8), w, b, out=rand(2, 4, 8)[:, 1:])


def test_add_layernorm_rejects_bad_residual():
    x, w, b = rand(4, 8), rand(8), rand(8)
    with pytest.raises(VitbenchError, match="residual has shape"):
        add_layernorm(x, rand(1, 8), w, b)
    with pytest.raises(VitbenchError, match="dtype mismatch"):
        add_layernorm(x, rand(4, 8, dtype=torch.float16), w, b)
    with pytest.raises(VitbenchError, match="residual has dtype"):
        add_layernorm(x, torch.ones(4, 8, dtype=torch.int32), w, b)
    with pytest.raises(VitbenchError, match="residual must be contiguous"):
        add_layernorm(x, rand(8, 4).t(), w, b)


# ------------------------------------------------------------------------------------- softmax

SM_SHAPES = [(3, 1), (2, 3, 197), (4, 577), (2, 5000), (1, 9000)]  # 9000: online path


@pytest.mark.parametrize("dtype", CPU_DTYPES)
@pytest.mark.parametrize("shape", SM_SHAPES)
def test_softmax_matches_reference(shape, dtype):
    x = rand(*shape, dtype=dtype, scale=3.0)
    out = poisoned(shape, dtype, DEVICE)
    assert softmax(x, out=out) is out
    assert_close(out, sm_ref(x), dtype)
    sums = out.double().sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=5e-3 if dtype == torch.float16 else 1e-5)


@pytest.mark.parametrize("scale", [0.125, -0.7, 0.0])
@pytest.mark.parametrize("dtype", CPU_DTYPES)
def test_softmax_scale(scale, dtype):
    x = rand(5, 197, dtype=dtype, scale=4.0)
    assert_close(softmax(x, scale=scale), sm_ref(x, scale), dtype)


@pytest.mark.parametrize("single", [True, False])
@pytest.mark.parametrize("dtype", CPU_DTYPES)
def test_softmax_huge_values(monkeypatch, single, dtype):
    if not single:
        monkeypatch.setattr(sm_mod, "MAX_SINGLE_BLOCK", 64)
    # Rows near +1e4 and -1e4 (fp16 holds them, exp would overflow without the max shift).
    x = torch.cat([rand(3, 300, scale=20.0, shift=1e4), rand(3, 300, scale=20.0, shift=-1e4)])
    x = x.to(dtype)
    out = softmax(x)
    assert torch.isfinite(out).all()
    assert_close(out, sm_ref(x), dtype)


@pytest.mark.parametrize("dtype", CPU_DTYPES)
def test_softmax_online_path(monkeypatch, dtype):
    monkeypatch.setattr(sm_mod, "MAX_SINGLE_BLOCK", 64)  # 577 = 9 chunks of 64 + 1 ragged
    x = rand(2, 3, 577, dtype=dtype, scale=3.0)
    x[0, 0, :70] = float("-inf")  # a whole first chunk of -inf must not poison the running sum
    out = poisoned(x.shape, dtype, DEVICE)
    softmax(x, scale=0.3, out=out)
    assert_close(out, sm_ref(x, 0.3), dtype)


def test_softmax_strided_rows_and_in_place():
    base = rand(4, 260, scale=2.0)
    x = base[:, 3:200]  # rows 260 apart
    out_base = poisoned((4, 210), torch.float32, DEVICE)
    softmax(x, out=out_base[:, :197])
    assert_close(out_base[:, :197], sm_ref(x), torch.float32)
    assert torch.isnan(out_base[:, 197:]).all()
    y = rand(6, 50, scale=2.0)
    ref = sm_ref(y)
    softmax(y, out=y)
    assert_close(y, ref, torch.float32)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: softmax(torch.ones(4, 8, dtype=torch.int32)), "x has dtype"),
        (lambda: softmax(torch.ones(4, 8, dtype=torch.float64)), "x has dtype"),
        (lambda: softmax(torch.empty(4, 8, device="meta")), "x is on meta"),
        (lambda: softmax(rand(8, 4).t()), "x must be contiguous in its last dim"),
        (lambda: softmax(torch.tensor(1.0)), "at least 1 dim"),
        (lambda: softmax(rand(4, 8), scale=float("nan")), "scale"),
        (lambda: softmax(rand(4, 8), scale="2"), "scale"),
        (lambda: softmax(rand(4, 8), out=rand(4, 9)), "out has shape"),
        (lambda: softmax(rand(4, 8), out=rand(4, 8, dtype=torch.float16)), "out has dtype"),
        (lambda: softmax(rand(4, 8), out=torch.empty(4, 8, device="meta")), "out is on meta"),
    ],
)
def test_softmax_rejects_bad_inputs(call, match):
    with pytest.raises(VitbenchError, match=match):
        call()


# ---------------------------------------------------------------------------------- cost models

def _nbytes(*ts):
    return sum(t.numel() * t.element_size() for t in ts)


@pytest.mark.parametrize("dtype", CPU_DTYPES)
def test_cost_models_count_each_tensor_once(dtype):
    x, y = rand(3, 7, 10, dtype=dtype), rand(7, 10, dtype=dtype)
    out = add(x, y)
    assert add_mod.add_cost(x.numel(), y.numel(), x.element_size()) == (x.numel(), _nbytes(x, y, out))
    w, b = rand(10, dtype=dtype), rand(10, dtype=dtype)
    s, n = add_layernorm(x, x, w, b)
    rows, D, isz = 21, 10, x.element_size()
    assert ln_mod.layernorm_cost(rows, D, isz)[1] == _nbytes(x, w, b, n)
    assert ln_mod.layernorm_cost(rows, D, isz, fused_residual=True)[1] == _nbytes(x, x, w, b, s, n)
    assert ln_mod.layernorm_cost(rows, D, isz, True)[0] > ln_mod.layernorm_cost(rows, D, isz)[0] > 0
    assert sm_mod.softmax_cost(rows, D, isz)[1] == _nbytes(x, softmax(x))
    assert sm_mod.softmax_cost(rows, D, isz)[0] >= 5 * x.numel()


# ----------------------------------------------------------------------------------------- GPU
# ViT-B/16 at batch 32: 32*197 = 6304 tokens of 768; attention scores 32*12*197 rows of 197.

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_gpu_vit_shapes(dtype):
    x, pos = rand(32, 197, 768, dtype=dtype), rand(1, 197, 768, dtype=dtype)
    out = poisoned(x.shape, dtype, DEVICE)
    add(x, pos, out=out)
    assert_close(out, x.double() + pos.double(), dtype)
    bias = rand(768, dtype=dtype, shift=1.0)
    assert_close(add(x, bias), x.double() + bias.double(), dtype)

    t = rand(6304, 768, dtype=dtype, scale=2.0, shift=0.3)
    w, b = rand(768, dtype=dtype, shift=1.0), rand(768, dtype=dtype)
    out = poisoned(t.shape, dtype, DEVICE)
    layernorm(t, w, b, 1e-12, out=out)
    assert_close(out, ln_ref(t, w, b, 1e-12), dtype)
    r = rand(6304, 768, dtype=dtype)
    s, n = add_layernorm(t, r, w, b, 1e-12)
    assert_close(s, t.double() + r.double(), dtype)
    assert_close(n, ln_ref(s, w, b, 1e-12), dtype)

    scores = rand(32 * 12 * 197, 197, dtype=dtype, scale=4.0)
    out = poisoned(scores.shape, dtype, DEVICE)
    softmax(scores, scale=0.125, out=out)
    assert_close(out, sm_ref(scores, 0.125), dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("width", [1000, 1280, 8192, 12345])  # 12345: looped / online paths
def test_gpu_wide_rows(dtype, width):
    x = rand(64, width, dtype=dtype, scale=2.0, shift=1.0)
    w, b = rand(width, dtype=dtype, shift=1.0), rand(width, dtype=dtype)
    r = rand(64, width, dtype=dtype)
    out = poisoned(x.shape, dtype, DEVICE)
    layernorm(x, w, b, out=out)
    assert_close(out, ln_ref(x, w, b, 1e-5), dtype)
    s, n = add_layernorm(x, r, w, b)
    assert torch.equal(s, x + r)
    assert_close(n, ln_ref(s, w, b, 1e-5), dtype)
    out = poisoned(x.shape, dtype, DEVICE)
    softmax(x, scale=1.5, out=out)
    assert_close(out, sm_ref(x, 1.5), dtype)
    big = rand(8, width, dtype=dtype, scale=20.0, shift=1e4 if dtype != torch.bfloat16 else 1e3)
    assert_close(softmax(big), sm_ref(big), dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_gpu_in_place_survives_autotuning(dtype):
    # New widths trigger autotuning on this call; the tuning runs must not apply the op twice.
    x = rand(77, 333, dtype=dtype, scale=2.0)
    ref = sm_ref(x)
    softmax(x, out=x)
    assert_close(x, ref, dtype)
    y, w, b = rand(77, 335, dtype=dtype, shift=2.0), rand(335, dtype=dtype), rand(335, dtype=dtype)
    ref = ln_ref(y, w, b, 1e-5)
    layernorm(y, w, b, out=y)
    assert_close(y, ref, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_gpu_add_large_and_unaligned(dtype):
    x = rand(32, 197, 3072, dtype=dtype)
    y = rand(197, 3072, dtype=dtype)
    assert_close(add(x, y), x.double() + y.double(), dtype)
    x, y = rand(3, 1001, 333, dtype=dtype), rand(333, dtype=dtype)  # n_y not a multiple of 16 B
    assert_close(add(x, y), x.double() + y.double(), dtype)
