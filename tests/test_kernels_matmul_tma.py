"""matmul_tma (persistent TMA-descriptor GEMM) against float64 references, and its eligibility.

CPU (Triton interpreter, which emulates tensor descriptors): fp16 on small irregular shapes, both
epilogue layouts (split in two halves / whole tile), more tiles than programs (persistence).
The `gpu` set adds bf16 at ViT-B/16 shapes and the opt-in dispatch from matmul().
"""

from __future__ import annotations

import importlib
import threading

import pytest
import torch
import torch.nn.functional as F

from vitbench._backend import DEVICE, INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels import EPILOGUES
from vitbench.kernels._common import _FixedConfig
from vitbench.kernels.matmul_tma import matmul_tma, tma_eligible
from vitbench.numerics import poisoned, rel_err, tolerance

# The modules (vitbench.kernels re-exports the functions under the same names).
matmul_mod = importlib.import_module("vitbench.kernels.matmul")
tma_mod = importlib.import_module("vitbench.kernels.matmul_tma")

RESIDUAL = ("residual", "gelu_residual")
dispatch = importlib.import_module("vitbench.kernels._dispatch")

pytestmark = pytest.mark.usefixtures("fresh_gemm_choices")


def rand(*shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).to(device=DEVICE, dtype=dtype)


def linear_ref(a, w, bias, epilogue, residual):
    """Reference of the matmul contract in a's precision (float64 on CPU)."""
    y = a.double() @ w.double().T if a.device.type == "cpu" else a @ w.T
    if bias is not None:
        y = y + bias.to(y.dtype)
    if epilogue in ("gelu", "gelu_residual"):
        y = F.gelu(y)
    elif epilogue == "gelu_tanh":
        y = F.gelu(y, approximate="tanh")
    if epilogue in RESIDUAL:
        y = y + residual.to(y.dtype)
    return y


def make(shape_a, N, dtype, epilogue, with_bias=True):
    K = shape_a[-1]
    a = rand(*shape_a, dtype=dtype)
    w = rand(N, K, dtype=dtype, scale=K ** -0.5)
    bias = rand(N, dtype=dtype) if with_bias else None
    out_shape = (*shape_a[:-1], N)
    residual = rand(*out_shape, dtype=dtype) if epilogue in RESIDUAL else None
    return a, w, bias, residual, out_shape


def check(shape_a, N, dtype, epilogue, with_bias=True):
    a, w, bias, residual, out_shape = make(shape_a, N, dtype, epilogue, with_bias)
    out = poisoned(out_shape, dtype, DEVICE)
    got = matmul_tma(a, w, bias, epilogue=epilogue, residual=residual, out=out)
    assert got is out
    err = rel_err(got, linear_ref(a, w, bias, epilogue, residual))
    assert err < tolerance(dtype), f"rel err {err}"


@pytest.fixture(params=[0, 1], ids=["split-epilogue", "whole-epilogue"])
def config(request, monkeypatch):
    """Run with each interpreter config (EPI_SUBTILE on / off); on a GPU, the autotuned kernel."""
    if INTERPRETER:
        cfg = tma_mod.TMA_CONFIGS[request.param]
        assert cfg.kwargs["EPI_SUBTILE"] == (request.param == 0)
        monkeypatch.setattr(tma_mod, "_matmul_tma", _FixedConfig(tma_mod._matmul_tma_kernel, cfg))
    return request.param


# ---------------------------------------------------------------------------- CPU (interpreter)
@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_epilogues_fp16(config, epilogue):
    # M = 77 rows: several partial row tiles; K = 48 (a partial K tile with BLOCK_K = 32);
    # N = 80: 3 column tiles of 32, the last partial; more tiles than the 3 programs.
    check((77, 48), 80, torch.float16, epilogue)


@pytest.mark.parametrize("with_bias", [False, True])
def test_3d_rows_and_tails(config, with_bias):
    # [B, T, K] input flattened to rows; N = 40 and K = 40: tails in both (multiples of 8 only).
    check((3, 29, 40), 40, torch.float16, "gelu_residual", with_bias)


def test_inplace_residual(config):
    # 77 x 48 -> 15 tiles of 16 x 32 or 9 of 32 x 32: more tiles than programs (3 SMs x PER_SM)
    a, w, bias, residual, _ = make((77, 32), 48, torch.float16, "residual")
    expect = linear_ref(a, w, bias, "residual", residual)
    got = matmul_tma(a, w, bias, epilogue="residual", residual=residual, out=residual)
    assert got is residual
    assert rel_err(got, expect) < tolerance(torch.float16)


def test_strided_out_rows():
    # out rows padded to 56 elements (112 B, 16-B aligned): written through its row stride only.
    a, w, bias, _, _ = make((33, 32), 48, torch.float16, "none")
    buf = poisoned((33, 56), torch.float16, DEVICE)
    out = buf[:, :48]
    matmul_tma(a, w, bias, out=out)
    assert rel_err(out, linear_ref(a, w, bias, "none", None)) < tolerance(torch.float16)
    assert torch.isnan(buf[:, 48:]).all(), "wrote outside out's columns"


def test_new_thread_gets_allocator():
    # triton's allocator is a ContextVar: a fresh thread starts without it.
    a, w, bias, _, _ = make((20, 16), 16, torch.float16, "none")
    result: dict[str, object] = {}

    def run():
        try:
            result["out"] = matmul_tma(a, w, bias)
        except Exception as e:  # re-raised below, in the test's thread
            result["err"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert "err" not in result, result.get("err")
    assert rel_err(result["out"], linear_ref(a, w, bias, "none", None)) < tolerance(torch.float16)


def _misaligned(rows: int, cols: int) -> torch.Tensor:
    """fp16 [rows, cols] whose base is 2 bytes past a 16-byte boundary."""
    return rand(rows * cols + 1, dtype=torch.float16)[1:].view(rows, cols)


def test_eligibility():
    h = torch.float16
    a, w = rand(10, 32, dtype=h), rand(16, 32, dtype=h)
    res = rand(10, 16, dtype=h)
    assert tma_eligible(a, w)
    assert tma_eligible(a, w, rand(16, dtype=h), epilogue="residual", residual=res, out=res)
    assert tma_eligible(rand(2, 5, 32, dtype=h), w)
    assert tma_eligible(a, w, rand(32, dtype=h)[::2])  # bias: any stride
    assert not tma_eligible(a.float(), w.float())  # fp32
    assert not tma_eligible(rand(10, 20, dtype=h), rand(16, 20, dtype=h))  # K % 8
    assert not tma_eligible(a, rand(12, 32, dtype=h))  # N % 8: output rows misaligned
    assert not tma_eligible(a, rand(16, 24, dtype=h))  # K mismatch
    assert not tma_eligible(_misaligned(10, 32), w)  # base not 16-B aligned
    assert not tma_eligible(rand(32, 10, dtype=h).T, w)  # column stride != 1
    assert not tma_eligible(rand(5, 2, 32, dtype=h).transpose(0, 1), w)  # 3-D not one row stride
    assert not tma_eligible(a, w, epilogue="residual")  # residual missing
    assert not tma_eligible(a, w, residual=res)  # residual without a residual epilogue
    assert not tma_eligible(a, w, epilogue="relu")
    assert not tma_eligible(a, w, out=rand(16, 10, dtype=h).T)  # column-major out
    assert not tma_eligible(a, "w")


def test_smem_prune():
    # Figures from compiling for sm_90 offline (tools/matmul_tma_compile.py): 128x256x64, 3 stages,
    # whole-tile epilogue needs 213.5 KB without a residual and 245.8 KB with one (> 227 KB);
    # warp-specialised, the same with or without.
    big = tma_mod._cfg(128, 256, 64, 3, 8, subtile=False)
    split = tma_mod._cfg(128, 256, 64, 3, 8)
    ws = tma_mod._cfg(128, 128, 128, 3, 4, subtile=False, ws=True)
    a = rand(8, 8, dtype=torch.float16)
    # a shape with whole rounds of tiles only (no tail-split variants): 132 SMs x 256 x 256 tiles
    args = lambda t: {"a_ptr": t, "M": 128 * 132, "N": 512, "K": 768}  # noqa: E731
    prune = lambda cfgs, t, epi: tma_mod.prune_by_smem(cfgs, args(t), EPILOGUE=epi, NUM_SMS=132)  # noqa: E731
    keep = lambda epi: prune([big, split, ws], a, epi)  # noqa: E731
    assert keep("none") == [big, split, ws]
    assert keep("residual") == [split, ws]
    assert prune([big], a.float(), "none") == [big]  # fallback: last
    # two programs per SM: both must fit the SM's 228 KB (112 KB each without a residual, 128 with)
    pair = tma_mod._cfg(128, 128, 64, 3, 4, per_sm=2)
    assert prune([pair, split], a, "none") == [pair, split]
    assert prune([pair, split], a, "residual") == [split]
    assert not tma_mod.fits(big, 2, residual=True) and tma_mod.fits(big, 2, residual=False)
    assert not tma_mod.fits(pair, 2, residual=True) and tma_mod.fits(pair, 2, residual=False)


def test_errors_name_the_problem():
    h = torch.float16
    a, w = rand(10, 32, dtype=h), rand(16, 32, dtype=h)
    with pytest.raises(VitbenchError, match="not eligible"):
        matmul_tma(a, rand(16, 20, dtype=h))
    with pytest.raises(VitbenchError, match="not eligible"):
        matmul_tma(a.float(), w.float())
    with pytest.raises(VitbenchError, match="epilogue"):
        matmul_tma(a, w, epilogue="relu")
    with pytest.raises(VitbenchError, match="needs a residual"):
        matmul_tma(a, w, epilogue="residual")
    with pytest.raises(VitbenchError, match="dtype mismatch"):
        matmul_tma(a, w.float())
    with pytest.raises(VitbenchError, match="out overlaps a"):
        matmul_tma(a, w, out=a[:, :16])


def test_matmul_dispatch(monkeypatch):
    """VITBENCH_MATMUL=tma: eligible calls go to matmul_tma, the others stay; =pointer: none."""
    calls = []
    real = tma_mod.matmul_tma

    def spy(*args, **kwargs):
        calls.append(args[0].dtype)
        return real(*args, **kwargs)

    monkeypatch.setattr(tma_mod, "matmul_tma", spy)
    monkeypatch.setattr(matmul_mod, "MODE", "tma")
    a, w, bias, res, _ = make((21, 32), 16, torch.float16, "gelu_residual")
    got = matmul_mod.matmul(a, w, bias, epilogue="gelu_residual", residual=res)
    assert calls == [torch.float16]
    assert rel_err(got, linear_ref(a, w, bias, "gelu_residual", res)) < tolerance(torch.float16)
    a32, w32 = a.float(), w.float()
    got = matmul_mod.matmul(a32, w32)  # fp32: not eligible, the default kernel runs
    assert calls == [torch.float16]
    assert rel_err(got, linear_ref(a32, w32, None, "none", None)) < tolerance(torch.float32)
    with pytest.raises(VitbenchError, match="precision"):
        matmul_mod.matmul(a, w, precision="fast")
    monkeypatch.setattr(matmul_mod, "MODE", "pointer")
    matmul_mod.matmul(a, w)
    assert calls == [torch.float16]
    monkeypatch.setattr(matmul_mod, "MODE", "fastest")
    with pytest.raises(VitbenchError, match="VITBENCH_MATMUL='fastest'"):
        matmul_mod.matmul(a, w)


@pytest.mark.parametrize("winner", ["tma", "pointer"])
def test_matmul_auto_times_once_and_keeps_the_faster(monkeypatch, winner):
    """MODE auto: the first call of a shape times both kernels on scratch outputs (an in-place
    residual is added exactly once to the caller's tensor), caches the faster, later calls reuse it."""
    timed, calls = [], []
    real = tma_mod.matmul_tma

    def spy(*args, **kwargs):
        calls.append("tma")
        return real(*args, **kwargs)

    def fake_timer(fn):  # runs the candidate (like do_bench) and says which kernel is faster
        before = len(calls)
        fn()
        name = "tma" if len(calls) > before else "pointer"
        timed.append(name)
        return 1.0 if name == winner else 2.0

    monkeypatch.setattr(tma_mod, "matmul_tma", spy)
    monkeypatch.setattr(dispatch, "_median_ms", fake_timer)
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setattr(matmul_mod, "INTERPRETER", False)  # auto times nothing in the interpreter
    monkeypatch.setattr(matmul_mod, "TMA_MIN_ROWS", 42)
    a, w, bias, res, _ = make((2, 21, 32), 16, torch.float16, "residual")
    expect = linear_ref(a, w, bias, "residual", res)
    for _ in range(2):
        h = res.clone()
        got = matmul_mod.matmul(a, w, bias, epilogue="residual", residual=h, out=h)
        assert got.data_ptr() == h.data_ptr()
        assert rel_err(h, expect) < tolerance(torch.float16)
    assert sorted(timed) == ["pointer", "tma"]  # timed once, both kernels
    assert list(dispatch.choices().values()) == [winner]
    # the two real calls ran the winner (the spy also saw the one timing run of tma)
    assert calls.count("tma") == 1 + (2 if winner == "tma" else 0)


def test_matmul_auto_keeps_small_gemms_on_the_pointer_kernel(monkeypatch):
    """MODE auto: fewer rows than TMA_MIN_ROWS -> the pointer kernel, nothing timed or cached."""
    monkeypatch.setattr(dispatch, "_median_ms", lambda fn: pytest.fail("timed a small GEMM"))
    monkeypatch.setattr(tma_mod, "matmul_tma", lambda *a, **k: pytest.fail("sent to matmul_tma"))
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setattr(matmul_mod, "INTERPRETER", False)
    monkeypatch.setattr(matmul_mod, "TMA_MIN_ROWS", 43)
    a, w, bias, _, _ = make((2, 21, 32), 16, torch.float16, "none")
    got = matmul_mod.matmul(a, w, bias)
    assert rel_err(got, linear_ref(a, w, bias, "none", None)) < tolerance(torch.float16)
    assert dispatch.choices() == {}


def test_tma_min_rows_env_override(monkeypatch):
    monkeypatch.delenv("VITBENCH_TMA_MIN_ROWS", raising=False)
    assert matmul_mod.tma_min_rows() == matmul_mod.TMA_MIN_ROWS
    monkeypatch.setenv("VITBENCH_TMA_MIN_ROWS", "1024")
    assert matmul_mod.tma_min_rows() == 1024
    monkeypatch.setenv("VITBENCH_TMA_MIN_ROWS", "0")
    assert matmul_mod.tma_min_rows() == 0
    for bad in ("-1", "many", "1e3"):
        monkeypatch.setenv("VITBENCH_TMA_MIN_ROWS", bad)
        with pytest.raises(VitbenchError, match="VITBENCH_TMA_MIN_ROWS"):
            matmul_mod.tma_min_rows()


def test_autotune_times_small_kernels_in_a_graph(monkeypatch):
    """Autotuning: a config under TUNE_GRAPH_BELOW_MS per eager launch is timed again replayed
    from a CUDA graph (the figure used); a slower one keeps its eager figure."""
    from vitbench.kernels import _common

    graph_calls = []
    monkeypatch.setenv("VITBENCH_TUNE_COLD", "0")  # warm replays here; the cold ones: the next test
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(_common.triton.testing, "do_bench_cudagraph",
                        lambda fn, rep, quantiles=None, return_mode="mean": graph_calls.append(rep)
                        or [0.004, 0.003, 0.005])
    for eager, expect in (([0.02, 0.01, 0.03], [0.004, 0.003, 0.005]), ([0.2, 0.1, 0.3], [0.2, 0.1, 0.3])):
        monkeypatch.setattr(_common.triton.testing, "do_bench", lambda fn, warmup, rep, quantiles, e=eager: e)
        assert _common._tune_bench(lambda: None, (0.5, 0.2, 0.8)) == expect
    assert len(graph_calls) == 1
    monkeypatch.setenv("VITBENCH_TUNE_GRAPH_BELOW_MS", "0")  # eager figures only
    assert _common._tune_bench(lambda: None, (0.5, 0.2, 0.8)) == [0.2, 0.1, 0.3]
    monkeypatch.setenv("VITBENCH_TUNE_GRAPH_BELOW_MS", "1.5")
    assert _common._tune_bench(lambda: None, (0.5, 0.2, 0.8)) == [0.004, 0.003, 0.005]
    for bad in ("fast", "-1", "nan"):
        monkeypatch.setenv("VITBENCH_TUNE_GRAPH_BELOW_MS", bad)
        with pytest.raises(VitbenchError, match="VITBENCH_TUNE_GRAPH_BELOW_MS"):
            _common.tune_graph_below_ms()


def test_autotune_cold_graph_timing_subtracts_the_flush(monkeypatch):
    """VITBENCH_TUNE_COLD (on unless 0): a small config's graph figure is taken with L2 flushed
    before each replayed launch, less the flush's own replayed time."""
    from vitbench.kernels import _common

    ran = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(_common, "_FLUSH", {"cuda:0": torch.zeros(8, dtype=torch.int32)})
    monkeypatch.setattr(_common, "_FLUSH_MS", {})

    def fake_graph(fn, rep, quantiles=None, return_mode="mean"):
        ran.append(fn)
        fn()  # the flushed pair runs the flush, then the kernel
        if quantiles is None:  # the flush alone
            return 0.010
        return [0.016, 0.015, 0.018]

    monkeypatch.setattr(_common.triton.testing, "do_bench_cudagraph", fake_graph)
    monkeypatch.setattr(_common.triton.testing, "do_bench", lambda fn, warmup, rep, quantiles: [0.02, 0.01, 0.03])
    calls = []
    monkeypatch.setenv("VITBENCH_TUNE_COLD", "1")
    got = _common._tune_bench(lambda: calls.append(1), (0.5, 0.2, 0.8))
    assert got == pytest.approx([0.006, 0.005, 0.008])
    assert calls == [1] and len(ran) == 2
    _common._tune_bench(lambda: calls.append(1), (0.5, 0.2, 0.8))
    assert len(ran) == 3  # the flush alone is timed once per device
    monkeypatch.delenv("VITBENCH_TUNE_COLD")  # on by default
    assert _common._tune_bench(lambda: None, (0.5, 0.2, 0.8)) == pytest.approx([0.006, 0.005, 0.008])
    monkeypatch.setenv("VITBENCH_TUNE_COLD", "0")
    assert _common._tune_bench(lambda: None, (0.5, 0.2, 0.8)) == [0.016, 0.015, 0.018]
    for bad in ("yes", "2"):
        monkeypatch.setenv("VITBENCH_TUNE_COLD", bad)
        with pytest.raises(VitbenchError, match="VITBENCH_TUNE_COLD"):
            _common.tune_cold()


# -------------------------------------------------------------------------------------- GPU
def _need_sm90():
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the TMA path needs compute capability >= 9 (Hopper)")


def ref32(a, w, bias, epilogue, residual):
    """float32 torch reference on the GPU (float64 there is slow at ViT sizes)."""
    f = lambda t: None if t is None else t.float()  # noqa: E731
    return linear_ref(f(a), f(w), f(bias), epilogue, f(residual)).float()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("name,N,K,epilogue", [
    ("qkv", 2304, 768, "none"), ("proj", 768, 768, "residual"), ("fc1", 3072, 768, "gelu"),
    ("fc1t", 3072, 768, "gelu_tanh"), ("fc2", 768, 3072, "residual"), ("fc2g", 768, 3072, "gelu_residual"),
])
def test_gpu_vit_shapes(dtype, batch, name, N, K, epilogue):
    _need_sm90()
    a, w, bias, res, out_shape = make((batch, 197, K), N, dtype, epilogue)
    assert tma_eligible(a, w, bias, epilogue=epilogue, residual=res)
    out = poisoned(out_shape, dtype, DEVICE)
    matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=out)
    err = rel_err(out, ref32(a, w, bias, epilogue, res))
    assert err < tolerance(dtype), f"{name}: rel err {err}"


@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(1, 64, 64), (197, 768, 768), (1001, 136, 264), (4099, 2304, 768)])
def test_gpu_irregular_bf16(M, N, K):
    _need_sm90()
    for epilogue in EPILOGUES:
        a, w, bias, res, out_shape = make((M, K), N, torch.bfloat16, epilogue)
        out = poisoned(out_shape, torch.bfloat16, DEVICE)
        matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=out)
        err = rel_err(out, ref32(a, w, bias, epilogue, res))
        assert err < tolerance(torch.bfloat16), f"{epilogue}: rel err {err}"


@pytest.mark.gpu
def test_gpu_inplace_residual_after_autotune():
    # In place: autotuned out of place first (tune_apart), so the residual is added exactly once.
    _need_sm90()
    a, w, bias, res, _ = make((6304, 768), 768, torch.bfloat16, "residual")
    expect = ref32(a, w, bias, "residual", res)
    matmul_tma(a, w, bias, epilogue="residual", residual=res, out=res)
    assert rel_err(res, expect) < tolerance(torch.bfloat16)


@pytest.mark.gpu
def test_gpu_matmul_dispatch(monkeypatch):
    _need_sm90()
    monkeypatch.setattr(matmul_mod, "MODE", "tma")
    a, w, bias, res, _ = make((8, 197, 768), 3072, torch.bfloat16, "gelu")
    assert tma_eligible(a, w, bias, epilogue="gelu")
    got = matmul_mod.matmul(a, w, bias, epilogue="gelu")
    assert rel_err(got, ref32(a, w, bias, "gelu", None)) < tolerance(torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual"])
def test_gpu_matmul_auto_in_place(monkeypatch, epilogue):
    # The default mode on a GPU: both kernels timed on scratch data, the real call made once.
    _need_sm90()
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setenv("VITBENCH_ROW_SPLIT", "0")  # its own choice is tested in test_kernels_rowsplit
    timed = []
    real_timer = dispatch._median_ms
    monkeypatch.setattr(dispatch, "_median_ms", lambda fn: timed.append(fn) or real_timer(fn))
    a, w, bias, res, shape = make((32, 197, 768), 768, torch.bfloat16, epilogue)
    expect = ref32(a, w, bias, epilogue, res)
    out = res if res is not None else poisoned(shape, torch.bfloat16, DEVICE)
    matmul_mod.matmul(a, w, bias, epilogue=epilogue, residual=res, out=out)
    assert rel_err(out, expect) < tolerance(torch.bfloat16)  # a residual added exactly once
    gluon = importlib.import_module("vitbench.kernels.matmul_gluon")
    n_gluon = len(gluon.CANDIDATES) if gluon.gluon_setting() and gluon.gluon_eligible(
        a, w, bias, epilogue=epilogue, residual=res, out=out) else 0
    # both kernels timed (CUDA-graph replays), on scratch outputs, and the Gluon configs that apply
    assert len(timed) == 2 + n_gluon
    (key, pick), = dispatch.choices().items()
    assert key[1] == (32, 197, 768) and key[5] == epilogue
    assert pick in ("pointer", "tma", *(list(gluon.CANDIDATES) if n_gluon else []))

