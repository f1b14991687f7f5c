"""matmul_fma (exact fp32 GEMM on the CUDA cores, in Gluon): its setting, eligibility and place among
matmul()'s timed candidates, and its offline sm_90 build on the CPU; its numerics against float64
on fresh, irregular inputs into poisoned outputs on a GPU (`gpu` set: Gluon has no interpreter)."""

from __future__ import annotations

import importlib

import pytest
import torch

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.numerics import poisoned, rel_err

from gpu_vit import vit_b16_fp32
from offline_build import offline_builds

matmul_mod = importlib.import_module("vitbench.kernels.matmul")
fma_mod = importlib.import_module("vitbench.kernels.matmul_fma")
dispatch = importlib.import_module("vitbench.kernels._dispatch")

pytestmark = pytest.mark.usefixtures("fresh_gemm_choices")
TOL = 1e-5  # relative Frobenius error vs float64; cuBLAS fp32 reached 3.5e-7 to 7.1e-7 on ViT shapes


def make(shape_a, N, epilogue="none", bias=True, dtype=torch.float32):
    K = shape_a[-1]
    a = torch.randn(*shape_a, dtype=torch.float64)
    w = torch.randn(N, K, dtype=torch.float64) * K ** -0.5
    b = torch.randn(N, dtype=torch.float64) if bias else None
    r = torch.randn(*shape_a[:-1], N, dtype=torch.float64) if epilogue == "residual" else None
    move = lambda t: None if t is None else t.to(device=DEVICE, dtype=dtype)  # noqa: E731
    return move(a), move(w), move(b), move(r)


def ref(a, w, b, epilogue, r):
    y = a.double() @ w.double().T + (0 if b is None else b.double())
    if epilogue == "gelu":
        y = torch.nn.functional.gelu(y)
    return y + r.double() if epilogue == "residual" else y


def test_configs_are_consistent():
    assert len(fma_mod.CANDIDATES) == len(fma_mod.CONFIGS) == len(set(fma_mod.CANDIDATES))
    for bm, bn, bk, spt_m, spt_n, tpw_m, wpc_m, warps, maxnreg in fma_mod.CONFIGS:
        # the accumulator layout's footprint tiles the block; the load layouts cover it exactly
        assert bm % (spt_m * tpw_m * wpc_m) == 0 and bn % (spt_n * (32 // tpw_m) * (warps // wpc_m)) == 0
        assert bk % 4 == 0 and 32 % (bk // 4) == 0
        assert (bm * bk) % (128 * warps) == 0 and (bn * bk) % (128 * warps) == 0
        assert maxnreg is None or maxnreg * 32 * warps <= 65536


def test_rows2d_views_without_copies():
    x = torch.randn(2, 5, 8)
    v = fma_mod._rows2d(x)
    assert v.shape == (10, 8) and v.data_ptr() == x.data_ptr()
    assert fma_mod._rows2d(x.transpose(0, 1)) is None  # rows that do not flatten
    assert fma_mod._rows2d(x[:, :, ::2]) is None  # strided columns
    assert fma_mod._rows2d(torch.randn(6, 4)).shape == (6, 4)


def test_gemm_operands_ok_rejects_each_mismatch():
    from vitbench.kernels._common import gemm_operands_ok

    a, w, b, r = make((2, 5, 16), 8, "residual")
    ok = lambda **kw: gemm_operands_ok(**{**dict(a=a, w=w, bias=b, residual=r, out=None,  # noqa: E731
                                                 adds_residual=True), **kw})
    assert ok() and ok(out=r) and ok(bias=None) and ok(residual=None, adds_residual=False)
    assert not ok(residual=None)  # the epilogue adds one
    assert not ok(adds_residual=False)  # given, but not added
    assert not ok(w=w[:, :8])  # K mismatch
    assert not ok(a=a[..., :0], w=w[:, :0])  # K = 0
    assert not ok(w=w[:0])  # N = 0
    assert not ok(a=a[0, 0])  # 1-D a
    assert not ok(bias=b[:4]) and not ok(bias=torch.randn(16, device=DEVICE)[::2])  # length, stride
    assert not ok(residual=r[:, :4]) and not ok(out=r[..., :4])  # shapes
    t = torch.empty(2, 8, 5, device=DEVICE).transpose(1, 2)  # the residual's address, other strides
    assert ok(residual=t, out=t)  # the same view: allowed (in place)
    assert not ok(residual=t, out=torch.as_strided(t, t.shape, (40, 8, 1)))


def test_not_eligible_off_the_gpu():
    if torch.device(DEVICE).type != "cpu":
        pytest.skip("on a GPU these inputs are eligible (test_gpu_fma)")
    a, w, b, r = make((40, 32), 16, "residual")
    assert not fma_mod.fma_eligible(a, w, b, epilogue="residual", residual=r)
    assert not fma_mod.fma_eligible(a, w, b)


@pytest.mark.parametrize("enabled", [True, False])
def test_auto_times_the_fma_configs(monkeypatch, enabled):
    """fp32 "ieee" with VITBENCH_FMA=1: every FMA config is timed beside the pointer kernel and the
    fastest runs the real call (in place here: the residual added once). Off: none is timed."""
    from vitbench.bench.metadata import kernel_choices

    pointer = matmul_mod._matmul_pointer
    runs = []

    def fake_fma(a, w, bias=None, *, epilogue="none", residual=None, out=None, config=None):
        runs.append(config)
        return pointer(a, w, bias, epilogue=epilogue, residual=residual, out=out)

    winner = list(fma_mod.CANDIDATES)[1]
    timed = []

    def fake_timer(fn):
        before = len(runs)
        fn()
        name = next((n for n, c in fma_mod.CANDIDATES.items() if len(runs) > before and runs[-1] == c), "pointer")
        timed.append(name)
        return 1.0 if name == winner else 2.0

    monkeypatch.setenv("VITBENCH_FMA", "1" if enabled else "0")
    monkeypatch.setenv("VITBENCH_FMA_SPLIT_K", "0")  # its configs: test_kernels_matmul_fma_splitk.py
    monkeypatch.setattr(fma_mod, "fma_eligible", lambda *a, **k: True)
    monkeypatch.setattr(fma_mod, "matmul_fma", fake_fma)
    monkeypatch.setattr(dispatch, "_median_ms", fake_timer)
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setattr(matmul_mod, "INTERPRETER", False)
    a, w, b, r = make((2, 21, 32), 16, "residual")
    h = r.clone()
    matmul_mod.matmul(a, w, b, epilogue="residual", residual=h, out=h)
    assert rel_err(h, ref(a, w, b, "residual", r)) < TOL
    if enabled:
        assert sorted(timed) == sorted(["pointer", *fma_mod.CANDIDATES])
        assert list(dispatch.choices().values()) == [winner] and runs[-1] == fma_mod.CANDIDATES[winner]
        assert kernel_choices() == [f"matmul a=(2, 21, 32) n=16 float32 residual bias in-place -> {winner}"]
        runs.clear()
        matmul_mod.matmul(a, w, b, epilogue="residual", residual=r)  # other key: timed again, then cached
        matmul_mod.matmul(a, w, b, epilogue="residual", residual=r)
        assert runs.count(fma_mod.CANDIDATES[winner]) == 3 and len(dispatch.choices()) == 2
    else:
        assert timed == [] and runs == [] and dispatch.choices() == {}


@pytest.mark.parametrize("kw", [dict(precision="tf32x3"), dict(epilogue="gelu_tanh")])
def test_other_fp32_calls_stay_on_the_pointer_kernel(monkeypatch, kw):
    monkeypatch.setenv("VITBENCH_FMA", "1")
    monkeypatch.setattr(fma_mod, "matmul_fma", lambda *a, **k: pytest.fail("FMA kernel called"))
    monkeypatch.setattr(dispatch, "_median_ms", lambda fn: pytest.fail("timed"))
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setattr(matmul_mod, "INTERPRETER", False)
    a, w, b, _ = make((9, 16), 8)
    matmul_mod.matmul(a, w, b, **kw)  # eligibility (real) says no to gelu_tanh; tf32x3 not exact
    assert dispatch.choices() == {}


def test_user_errors_still_raise_with_the_setting_on(monkeypatch):
    monkeypatch.setenv("VITBENCH_FMA", "1")
    monkeypatch.setattr(fma_mod, "fma_eligible", lambda *a, **k: True)
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setattr(matmul_mod, "INTERPRETER", False)
    a, w, b, r = make((9, 16), 8, "residual")
    with pytest.raises(VitbenchError, match="residual has shape"):
        matmul_mod.matmul(a, w, b, epilogue="residual", residual=r[:, :4])
    with pytest.raises(VitbenchError, match="needs a residual"):
        matmul_mod.matmul(a, w, b, epilogue="residual")
    with pytest.raises(VitbenchError, match="w has shape"):
        matmul_mod.matmul(a, w[:, :8], b)


_BUILD = """
from vitbench.kernels import matmul_fma as fm
fn = fm._fma_gemm_kernel
for name, (bm, bn, bk, spt_m, spt_n, tpw_m, wpc_m, warps, maxnreg) in fm.CANDIDATES.items():
    for epilogue, code in fm.EPILOGUES.items():
        consts = dict(HAS_BIAS=True, EPILOGUE=code, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, SPT_M=spt_m,
                      SPT_N=spt_n, TPW_M=tpw_m, WPC_M=wpc_m, GROUP=fm.GROUP_M, num_warps=warps)
        sig = {n: "constexpr" if n in consts else "*fp32" if n.endswith("_ptr") else "i32" for n in fn.arg_names}
        attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
                 if n.endswith("_ptr") or n in ("N", "K") or n.startswith("stride_")}
        r = _sm90.build(fn, sig, consts, attrs, warps, 1, source=GluonASTSource, maxnreg=maxnreg)
        out.append(dict(name=name, epilogue=epilogue, maxnreg=maxnreg, bk=bk, bm=bm, bn=bn, **r))
"""


@pytest.mark.skipif(not fma_mod.AVAILABLE, reason="this triton has no Gluon")
def test_offline_sm90_build():
    """Every candidate config with each epilogue builds for sm_90 with the bundled ptxas, at the
    alignment a ViT launch specialises on: registers within the config's cap (two 256-thread
    programs per SM for the capped one), spills only where capped, the main loop's 64 FFMA per k,
    and shared memory as designed. In a fresh process without the interpreter: once Triton's
    interpreter has run a kernel, building a compiled one in the same process fails."""
    builds = offline_builds(_BUILD)
    assert len(builds) == len(fma_mod.CANDIDATES) * len(fma_mod.EPILOGUES)
    for r in builds:
        where = f"{r['name']} {r['epilogue']}"
        assert r["regs"] <= (r["maxnreg"] or 255), where
        assert (r["spill_st"] == 0) if r["maxnreg"] is None else (r["spill_st"] <= 128), (where, r)
        # the main loop body holds two K tiles: 2 * bk * 64 FFMA (fp32-class ops count at least that)
        assert r["sass_fp32"] >= 2 * r["bk"] * 64, (where, r)
        assert r["smem"] == 2 * 4 * r["bk"] * (r["bm"] + r["bn"]), (where, r)


def _need_gpu():
    if not fma_mod.fma_eligible(*make((8, 8), 8)[:2]):
        pytest.skip("needs CUDA and Gluon")


@pytest.mark.gpu
@pytest.mark.parametrize("M,N,K", [(1, 8, 8), (1000, 200, 136), (257, 776, 770), (333, 100, 20), (130, 129, 8),
                                   (6304, 768, 3072)])
@pytest.mark.parametrize("epilogue", list(fma_mod.EPILOGUES))
def test_gpu_fma(M, N, K, epilogue):
    _need_gpu()
    check_launchers(M, N, K, epilogue, {name: (lambda *args, cfg=cfg, **kw: fma_mod.matmul_fma(*args, config=cfg, **kw))
                                        for name, cfg in fma_mod.CANDIDATES.items()})


def check_launchers(M, N, K, epilogue, launchers):
    """Each launcher(a, w, b, epilogue=, residual=, out=) of `launchers` ({name: launcher}), with
    and without bias, against float64 into a NaN-poisoned output it must return."""
    for name, launch in launchers.items():
        for bias in (True, False):
            a, w, b, r = make((M, K), N, epilogue, bias)
            assert fma_mod.fma_eligible(a, w, b, epilogue=epilogue, residual=r)
            out = poisoned((M, N), torch.float32, DEVICE)
            got = launch(a, w, b, epilogue=epilogue, residual=r, out=out)
            torch.cuda.synchronize()
            assert got is out
            err = rel_err(out, ref(a, w, b, epilogue, r))
            assert err < TOL, f"{name} {epilogue} bias={bias} {M}x{N}x{K}: rel err {err}"


@pytest.mark.gpu
def test_gpu_in_place_3d_rows_and_eligibility():
    _need_gpu()
    a, w, b, r = make((32, 197, 768), 768, "residual")
    expect = ref(a, w, b, "residual", r)
    for name, cfg in fma_mod.CANDIDATES.items():
        h = r.clone()
        assert fma_mod.fma_eligible(a, w, b, epilogue="residual", residual=h, out=h)
        fma_mod.matmul_fma(a, w, b, epilogue="residual", residual=h, out=h, config=cfg)
        assert rel_err(h, expect) < TOL, name
    assert not fma_mod.fma_eligible(a.half(), w.half())  # 16-bit
    assert not fma_mod.fma_eligible(a, w, b, epilogue="gelu_tanh")
    assert not fma_mod.fma_eligible(a, w, b, epilogue="residual", residual=None)
    t = torch.empty(768, 32 * 197, device=DEVICE)  # a transposed (strided) output
    assert not fma_mod.fma_eligible(a.reshape(-1, 768), w, b, out=t.T)


def _gpu_cases():
    """(name, fresh matmul kwargs, reference) for the layouts the model passes: 3-D rows, in-place
    and out-of-place residuals, the CLS rows [B, 1, D] of hidden states (strided rows), a strided
    out. The kwargs are made anew per call (an in-place call changes its residual)."""
    B, T, D = 3, 197, 768
    x = torch.randn(B, T, D, device=DEVICE)
    w1, b1 = torch.randn(3072, D, device=DEVICE) / D ** 0.5, torch.randn(3072, device=DEVICE)
    w2, b2 = torch.randn(D, D, device=DEVICE) / D ** 0.5, torch.randn(D, device=DEVICE)
    h = torch.randn(B, T, D, device=DEVICE)

    def in_place(rows):
        hc = h.clone()
        return dict(a=x[rows], w=w2, bias=b2, epilogue="residual", residual=hc[rows], out=hc[rows])

    def strided_out():
        big = torch.full((B * T, 2 * D), float("nan"), device=DEVICE)
        return dict(a=x.reshape(-1, D), w=w2, bias=b2, out=big[:, :D])

    every, cls = (slice(None), slice(None)), (slice(None), slice(0, 1))
    return [
        ("gelu 3-D", lambda: dict(a=x, w=w1, bias=b1, epilogue="gelu"), ref(x, w1, b1, "gelu", None)),
        ("residual 3-D", lambda: dict(a=x, w=w2, bias=b2, epilogue="residual", residual=h),
         ref(x, w2, b2, "residual", h)),
        ("residual in place", lambda: in_place(every), ref(x, w2, b2, "residual", h)),
        ("CLS rows in place", lambda: in_place(cls), ref(x[cls], w2, b2, "residual", h[cls])),
        ("strided a rows", lambda: dict(a=x[:, 0], w=w2, bias=None), ref(x[:, 0], w2, None, "none", None)),
        ("strided out", strided_out, ref(x.reshape(-1, D), w2, b2, "none", None)),
    ]


@pytest.mark.gpu
@pytest.mark.parametrize("winner", list(fma_mod.CANDIDATES))
def test_gpu_matmul_routes_to_each_config(monkeypatch, winner):
    """matmul() with VITBENCH_FMA=1, the timing rigged so that `winner` wins: the FMA kernel runs
    every case (first call: timed, second: cached), right each time."""
    _need_gpu()
    real, runs = fma_mod.matmul_fma, []

    def counted(*args, config=None, **kw):
        runs.append(config)
        return real(*args, config=config, **kw)

    def rigged(fn):
        before = len(runs)
        fn()
        torch.cuda.synchronize()
        return 1.0 if runs[before:] == [fma_mod.CANDIDATES[winner]] else 2.0

    monkeypatch.setattr(fma_mod, "matmul_fma", counted)
    monkeypatch.setattr(dispatch, "_median_ms", rigged)
    monkeypatch.setenv("VITBENCH_FMA", "1")
    monkeypatch.setenv("VITBENCH_FMA_SPLIT_K", "0")  # split routing: test_kernels_matmul_fma_splitk.py
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    check_routed_cases(runs, fma_mod.CANDIDATES[winner])


def check_routed_cases(runs: list, want) -> None:
    """Every layout case of _gpu_cases through matmul(), first call (timed) and second (cached):
    the last launch recorded in `runs` (cleared before each call) ran config `want`, and the
    result is right."""
    for name, make_kwargs, expect in _gpu_cases():
        for call in ("timed", "cached"):
            kw = make_kwargs()
            runs.clear()
            got = matmul_mod.matmul(kw.pop("a"), kw.pop("w"), kw.pop("bias"), precision="ieee", **kw)
            torch.cuda.synchronize()
            assert runs and runs[-1] == want, (name, call, runs)
            assert rel_err(got, expect) < TOL, (name, call, rel_err(got, expect))


@pytest.mark.gpu
def test_gpu_vit_b16_fp32_forward_with_the_fma_gemm(monkeypatch):
    """A ViT-B/16 fp32 "ieee" forward returning logits only (the last layer's CLS rows: in-place
    [B, 1, D] residuals), replayed from a CUDA graph, with VITBENCH_FMA=1: the FMA kernel wins
    somewhere, and the logits are within the model's fp32 gate (1e-4) of HF in float64 and
    close to the forward without it."""
    _need_gpu()
    from vitbench.model.graphs import GraphRunner

    forward, x, want = vit_b16_fp32(4)

    logits, picks = {}, []
    monkeypatch.setattr(matmul_mod, "MODE", "auto")  # the GPU test run sets VITBENCH_MATMUL=pointer
    for setting in ("0", "1"):
        monkeypatch.setenv("VITBENCH_FMA", setting)
        dispatch.reset()
        logits[setting] = GraphRunner(forward)(x)[2].clone()
        picks += list(dispatch.choices().values())
    assert any(p in fma_mod.CANDIDATES for p in picks), picks
    for setting, got in logits.items():
        assert rel_err(got, want) <= 1e-4, (setting, rel_err(got, want))
    assert rel_err(logits["1"], logits["0"].double()) <= 1e-5


@pytest.mark.gpu
def test_gpu_matmul_routes_fp32_through_the_timing(monkeypatch):
    _need_gpu()
    monkeypatch.setenv("VITBENCH_FMA", "1")
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    a, w, b, r = make((4, 197, 768), 3072, "gelu")
    got = matmul_mod.matmul(a, w, b, epilogue="gelu")
    assert rel_err(got, ref(a, w, b, "gelu", None)) < TOL
    (pick,) = dispatch.choices().values()
    assert pick in (*fma_mod.CANDIDATES, "pointer")
