"""matmul_tma with fp32 operands and precision "tf32" (TF32 wgmma; TF32_CONFIGS), and matmul()'s
routing of fp32 "tf32" calls to it behind VITBENCH_TF32_TMA.

CPU (Triton interpreter, which emulates tensor descriptors): both interpreter configs on an
irregular shape with every epilogue, into a poisoned output, against float64; eligibility; the
prune keeping TF32_CONFIGS for 4-byte operands only; the routing with the timing rigged.
The `gpu` set: the ViT-B/16 shapes against a float32 torch reference, and the routed forward.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from tests.offline_build import without_interpreter
from tests.test_kernels_matmul_tma import linear_ref, make, ref32
from vitbench._backend import DEVICE, INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels import EPILOGUES
from vitbench.kernels._common import _FixedConfig, round_tf32_
from vitbench.kernels.matmul_tma import matmul_tma, tma_eligible
from vitbench.numerics import poisoned, rel_err, tolerance

matmul_mod = importlib.import_module("vitbench.kernels.matmul")
tma_mod = importlib.import_module("vitbench.kernels.matmul_tma")
dispatch = importlib.import_module("vitbench.kernels._dispatch")

pytestmark = pytest.mark.usefixtures("fresh_gemm_choices")
F32 = torch.float32
TOL = tolerance(F32, "tf32")
EXACT_TOL = 1e-5  # TF32-exact operands: only the fp32 accumulation rounds (measured ~1e-6 is the aim)


@pytest.fixture(params=[0, 1], ids=["split-epilogue", "whole-epilogue"])
def interp_config(request, monkeypatch):
    """Each interpreter config (on a GPU: the autotuned kernel)."""
    if INTERPRETER:
        cfg = tma_mod.TMA_CONFIGS[request.param]
        monkeypatch.setattr(tma_mod, "_matmul_tma", _FixedConfig(tma_mod._matmul_tma_kernel, cfg))
    return request.param


# ---------------------------------------------------------------------------- CPU (interpreter)
@pytest.mark.parametrize("epilogue", EPILOGUES)
def test_fp32_tf32_epilogues(interp_config, epilogue):
    # 77 rows, K = 48 (a partial K tile), N = 80 (a partial column tile): more tiles than programs
    a, w, bias, res, shape = make((77, 48), 80, F32, epilogue)
    out = poisoned(shape, F32, DEVICE)
    got = matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=out, precision="tf32")
    assert got is out
    assert rel_err(got, linear_ref(a, w, bias, epilogue, res)) < TOL


def test_fp32_tf32_in_place_3d():
    a, w, bias, res, _ = make((2, 29, 40), 48, F32, "residual")
    expect = linear_ref(a, w, bias, "residual", res)
    got = matmul_tma(a, w, bias, epilogue="residual", residual=res, out=res, precision="tf32")
    assert got is res and rel_err(res, expect) < TOL


def test_fp32_needs_tf32():
    a, w = torch.randn(10, 32, device=DEVICE), torch.randn(16, 32, device=DEVICE)
    assert tma_eligible(a, w, precision="tf32")
    for precision in ("ieee", "tf32x3", "bf16x6"):
        assert not tma_eligible(a, w, precision=precision)
    h = torch.float16
    assert tma_eligible(a.to(h), w.to(h), precision="tf32")  # 16-bit: precision does not apply
    assert not tma_eligible(a, w.to(h), precision="tf32")  # mixed dtypes
    with pytest.raises(VitbenchError, match="precision='tf32'"):
        matmul_tma(a, w)


def test_prune_keeps_tf32_configs_for_fp32_only(monkeypatch):
    c16, c32 = tma_mod._cfg(128, 128, 64, 4, 4), tma_mod._cfg(128, 128, 32, 4, 4)
    monkeypatch.setattr(tma_mod, "INTERPRETER", False)
    monkeypatch.setattr(tma_mod, "TF32_CONFIGS", [c32])
    args = lambda t: {"a_ptr": t, "M": 128 * 132, "N": 512, "K": 768}  # noqa: E731
    prune = lambda t: tma_mod.prune_by_smem([c16, c32], args(t), EPILOGUE="none", NUM_SMS=132)  # noqa: E731
    assert prune(torch.empty(8, 8, dtype=torch.bfloat16)) == [c16]
    assert prune(torch.empty(8, 8, dtype=F32)) == [c32]
    # a list without its dtype's configs still gives the autotuner one
    assert tma_mod.prune_by_smem([c16], args(torch.empty(8, 8, dtype=F32)), EPILOGUE="none",
                                 NUM_SMS=132) == [c16]


def test_tf32_configs_fit_and_use_block_k_32():
    # the GPU config lists (the interpreter has its own): imported in a process without it
    code = ("from vitbench.kernels import matmul_tma as T\n"
            "assert len(T.TF32_CONFIGS) >= 4, T.TF32_CONFIGS\n"
            "for c in T.TF32_CONFIGS:\n"
            "    assert c.kwargs['BLOCK_K'] == 32 and T.fits(c, 4, residual=False), c\n"
            "    assert not any(c is t for t in T.TMA_CONFIGS)\n"
            "assert T._ALL_CONFIGS == T.TMA_CONFIGS + T.TF32_CONFIGS\n")
    without_interpreter(code)


@pytest.mark.parametrize("enabled,exact", [(True, True), (False, True), (True, False)],
                         ids=["on", "off", "on-not-exact"])
def test_auto_times_tma_for_fp32_tf32(monkeypatch, enabled, exact):
    """VITBENCH_TF32_TMA=1, VITBENCH_MATMUL=auto: an fp32 "tf32" GEMM whose operands are promised
    TF32-exact (tf32_exact) times the pointer kernel (in tf32) against the TMA kernel and runs the
    faster; setting off, or no promise (the TMA kernel would truncate): the pointer kernel, untimed."""
    timed, tma_calls = [], []
    real = tma_mod.matmul_tma

    def spy(*args, **kwargs):
        tma_calls.append(kwargs.get("precision"))
        return real(*args, **kwargs)

    def fake_timer(fn):
        before = len(tma_calls)
        fn()
        timed.append("tma" if len(tma_calls) > before else "pointer")
        return 1.0 if timed[-1] == "tma" else 2.0

    monkeypatch.setenv("VITBENCH_TF32_TMA", "1" if enabled else "0")
    monkeypatch.setattr(tma_mod, "matmul_tma", spy)
    monkeypatch.setattr(dispatch, "_median_ms", fake_timer)
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setattr(matmul_mod, "INTERPRETER", False)
    monkeypatch.setattr(matmul_mod, "TMA_MIN_ROWS", 40)
    a, w, bias, res, _ = make((2, 21, 32), 16, F32, "residual")
    round_tf32_(a), round_tf32_(w)
    expect = linear_ref(a, w, bias, "residual", res)
    for _ in range(2):
        h = res.clone()
        matmul_mod.matmul(a, w, bias, epilogue="residual", residual=h, out=h, precision="tf32",
                          tf32_exact=exact)
        assert rel_err(h, expect) < TOL
    if enabled and exact:
        assert sorted(timed) == ["pointer", "tma"] and list(dispatch.choices().values()) == ["tma"]
        assert tma_calls == ["tf32"] * 3  # the timing run, then both calls
    else:
        assert timed == [] and tma_calls == [] and dispatch.choices() == {}


def test_forced_tma_mode_takes_fp32_tf32_only_when_enabled(monkeypatch):
    calls = []
    real = tma_mod.matmul_tma
    monkeypatch.setattr(tma_mod, "matmul_tma", lambda *a, **k: calls.append(k["precision"]) or real(*a, **k))
    monkeypatch.setattr(matmul_mod, "MODE", "tma")
    a, w, bias, _, _ = make((21, 32), 16, F32, "gelu")
    for setting, want in (("0", []), ("1", ["tf32"])):
        monkeypatch.setenv("VITBENCH_TF32_TMA", setting)
        got = matmul_mod.matmul(a, w, bias, epilogue="gelu", precision="tf32", tf32_exact=True)
        assert calls == want and rel_err(got, linear_ref(a, w, bias, "gelu", None)) < TOL
    matmul_mod.matmul(a, w, bias, epilogue="gelu", precision="tf32")  # no promise: pointer kernel
    matmul_mod.matmul(a, w, bias, epilogue="gelu", precision="tf32x3", tf32_exact=True)  # other modes
    assert calls == ["tf32"]
    monkeypatch.setenv("VITBENCH_TF32_TMA", "on")
    with pytest.raises(VitbenchError, match="VITBENCH_TF32_TMA='on'"):
        matmul_mod.matmul(a, w, bias, precision="tf32", tf32_exact=True)


# ---------------------------------------------------------------------------- GPU
def _need_sm90():
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the TMA path needs compute capability >= 9 (Hopper)")


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("N,K,epilogue", [(2304, 768, "none"), (768, 768, "residual"),
                                          (3072, 768, "gelu"), (768, 3072, "residual")])
def test_gpu_vit_shapes_tf32(monkeypatch, batch, N, K, epilogue):
    _need_sm90()
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # an fp32 reference
    a, w, bias, res, shape = make((batch, 197, K), N, F32, epilogue)
    out = poisoned(shape, F32, DEVICE)
    matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=out, precision="tf32")
    assert rel_err(out, ref32(a, w, bias, epilogue, res)) < TOL


@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(1, 64, 64), (1001, 136, 264), (4099, 2304, 768)])
def test_gpu_irregular_tf32(monkeypatch, M, N, K):
    _need_sm90()
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    for epilogue in EPILOGUES:
        a, w, bias, res, shape = make((M, K), N, F32, epilogue)
        out = poisoned(shape, F32, DEVICE)
        matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=out, precision="tf32")
        assert rel_err(out, ref32(a, w, bias, epilogue, res)) < TOL, epilogue


@pytest.mark.gpu
def test_gpu_auto_routes_fp32_tf32(monkeypatch):
    _need_sm90()
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setenv("VITBENCH_TF32_TMA", "1")
    monkeypatch.setattr(matmul_mod, "MODE", "auto")  # the GPU test run sets VITBENCH_MATMUL=pointer
    a, w, bias, res, _ = make((32, 197, 3072), 768, F32, "residual")
    round_tf32_(a), round_tf32_(w)
    expect = ref32(a, w, bias, "residual", res)
    matmul_mod.matmul(a, w, bias, epilogue="residual", residual=res, out=res, precision="tf32",
                      tf32_exact=True)
    assert rel_err(res, expect) < EXACT_TOL
    assert list(dispatch.choices().values())[-1] in ("tma", "pointer")


@pytest.mark.gpu
@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual"])
def test_gpu_tf32_exact_operands_lose_nothing(monkeypatch, epilogue):
    """The TF32 wgmma drops the low 13 mantissa bits of what it loads. On TF32 values that drops
    nothing: the products are exact in fp32 and only the fp32 sums round, so the result matches a
    float64 product of the same operands to ~1e-6 (unrounded operands: ~5e-4, truncated)."""
    _need_sm90()
    a, w, bias, res, shape = make((8, 197, 768), 3072 if epilogue == "gelu" else 768, F32, epilogue)
    round_tf32_(a), round_tf32_(w)
    out = poisoned(shape, F32, DEVICE)
    matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=out, precision="tf32")
    f64 = lambda t: None if t is None else t.double()  # noqa: E731
    assert rel_err(out, linear_ref(f64(a), f64(w), f64(bias), epilogue, f64(res))) < EXACT_TOL
