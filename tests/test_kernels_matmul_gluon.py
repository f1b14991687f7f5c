"""matmul_gluon (Hopper GEMM in Gluon, residual tile TMA-prefetched into shared memory): its
eligibility, setting and place among matmul()'s timed candidates on the CPU; its numerics against
references on fresh, irregular inputs into poisoned outputs on a Hopper GPU (`gpu` set: Gluon has
no interpreter, so the kernel itself runs only there)."""

from __future__ import annotations

import importlib

import pytest
import torch

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.numerics import poisoned, rel_err, tolerance

matmul_mod = importlib.import_module("vitbench.kernels.matmul")
gluon_mod = importlib.import_module("vitbench.kernels.matmul_gluon")
dispatch = importlib.import_module("vitbench.kernels._dispatch")

pytestmark = pytest.mark.usefixtures("fresh_gemm_choices")


def rand(*shape, dtype, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).to(device=DEVICE, dtype=dtype)


def make(shape_a, N, dtype, residual=True, bias=True):
    K = shape_a[-1]
    a = rand(*shape_a, dtype=dtype)
    w = rand(N, K, dtype=dtype, scale=K ** -0.5)
    b = rand(N, dtype=dtype) if bias else None
    r = rand(*shape_a[:-1], N, dtype=dtype) if residual else None
    return a, w, b, r


# elementwise: the largest error against the reference's largest magnitude (tools/gluon_probe.py's
# bounds, passed by every config on the H100), so that a race spoiling a few tiles cannot hide in
# the Frobenius rel_err
MAX_ERR = {torch.bfloat16: 2e-2, torch.float16: 4e-3}


def max_err(out, expect) -> float:
    o, e = out.double().cpu(), expect.double().cpu()
    return float((o - e).abs().max() / e.abs().max().clamp_min(1e-30))


def ref(a, w, b, r):
    y = a.double() @ w.double().T
    if b is not None:
        y = y + b.double()
    if r is not None:
        y = y + r.double()
    return y


def test_setting(monkeypatch):
    monkeypatch.delenv("VITBENCH_GLUON", raising=False)
    assert gluon_mod.gluon_setting() is True
    monkeypatch.setenv("VITBENCH_GLUON", "0")
    assert gluon_mod.gluon_setting() is False
    monkeypatch.setenv("VITBENCH_GLUON", "yes")
    with pytest.raises(VitbenchError, match="VITBENCH_GLUON='yes'"):
        gluon_mod.gluon_setting()


def test_cli_rejects_a_bad_setting(monkeypatch):
    from typer.testing import CliRunner

    from vitbench.cli import app

    monkeypatch.setenv("VITBENCH_GLUON", "2")
    res = CliRunner().invoke(app, ["env"])
    assert res.exit_code != 0 and isinstance(res.exception, VitbenchError)
    assert "VITBENCH_GLUON='2'" in str(res.exception)


def test_triton_versions():
    assert gluon_mod.triton_supported("3.6.0") and gluon_mod.triton_supported("3.5.1")
    assert not gluon_mod.triton_supported("3.9.0") and not gluon_mod.triton_supported("3.10.0+git1234")
    assert not gluon_mod.triton_supported("4.0.0")


def test_not_eligible_without_a_hopper_gpu():
    if torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9 and DEVICE != "cpu":
        pytest.skip("a Hopper GPU: these inputs are eligible there (test_gpu_eligibility)")
    a, w, b, r = make((40, 32), 16, torch.float16)
    assert not gluon_mod.gluon_eligible(a, w, b, epilogue="residual", residual=r)
    assert not gluon_mod.gluon_eligible(a, w, b)


def test_configs_fit_shared_memory():
    assert gluon_mod.CANDIDATES and set(gluon_mod.CANDIDATES.values()) <= set(gluon_mod.CONFIGS)
    for bm, bn, bk, stages, warps, consumers in gluon_mod.CONFIGS:
        # the estimate runs up to ~256 B short of the compiled kernels (tools/matmul_gluon_compile.py)
        assert gluon_mod.smem_bytes(bm, bn, bk, stages, consumers) + 1024 <= gluon_mod._SMEM_BYTES
        assert warps % 4 == 0 and bm % 64 == 0 and bn % 64 == 0 and stages >= 2 and consumers in (1, 2)
        # registers: maxnreg for every warpgroup (the loader's padded to one) within 64K; after
        # setmaxnreg the consumers' and the loader's shares within the same budget, each consumer
        # thread with room beyond its accumulator (bm * bn / (32 * warps) fp32 registers)
        maxnreg = gluon_mod.max_registers(warps, consumers)
        regs = gluon_mod.consumer_registers(warps, consumers)
        assert (warps * consumers + 4) * 32 * maxnreg <= 65536
        loader = 4 * 32 * gluon_mod.LOADER_REGISTERS
        assert warps * consumers * 32 * regs + loader <= (warps * consumers + 4) * 32 * maxnreg
        assert regs % 8 == 0 and regs <= 256 and regs >= bm * bn // (32 * warps) + 64
    assert gluon_mod.smem_bytes(64, 256, 64, 5, 2) > gluon_mod._SMEM_BYTES  # the check can fail
    assert gluon_mod.consumer_registers(8, 2) < 128 + 64  # so can this: 8-warp ping-pong does not fit


def test_register_figures():
    # the figures the compiled kernels showed (setmaxnreg 232 / 40 in the PTX, maxnreg 168)
    assert gluon_mod.register_meta(8, 1) == dict(CONSUMERS=1, CONSUMER_REGS=232, LOADER_REGS=40, maxnreg=168)
    assert gluon_mod.register_meta(4, 2) == dict(CONSUMERS=2, CONSUMER_REGS=232, LOADER_REGS=40, maxnreg=168)


@pytest.mark.parametrize("enabled", [True, False])
def test_auto_times_the_gluon_configs(monkeypatch, enabled):
    """MODE auto with an eligible call: every Gluon candidate is timed beside the pointer and TMA
    kernels; the fastest one runs the real call with its config. VITBENCH_GLUON=0: none timed."""
    pointer = matmul_mod._matmul_pointer
    runs = []

    def fake_gluon(a, w, bias=None, *, epilogue="none", residual=None, out=None, config=None):
        runs.append(config)
        return pointer(a, w, bias, epilogue=epilogue, residual=residual, out=out)

    winner = list(gluon_mod.CANDIDATES)[-1]
    timed = []

    def fake_timer(fn):
        before = len(runs)
        fn()
        name = next((n for n, c in gluon_mod.CANDIDATES.items() if len(runs) > before and runs[-1] == c),
                    "other")
        timed.append(name)
        return 1.0 if name == winner else 2.0

    monkeypatch.setenv("VITBENCH_GLUON", "1" if enabled else "0")
    monkeypatch.setattr(gluon_mod, "gluon_eligible", lambda *a, **k: True)
    monkeypatch.setattr(gluon_mod, "matmul_gluon", fake_gluon)
    monkeypatch.setattr(dispatch, "_median_ms", fake_timer)
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setattr(matmul_mod, "INTERPRETER", False)
    monkeypatch.setattr(matmul_mod, "TMA_MIN_ROWS", 8)
    monkeypatch.setenv("VITBENCH_ROW_SPLIT", "0")
    a, w, b, r = make((2, 21, 32), 16, torch.float16)
    h = r.clone()
    matmul_mod.matmul(a, w, b, epilogue="residual", residual=h, out=h)  # in place: added once
    assert rel_err(h, ref(a, w, b, r)) < tolerance(torch.float16)
    gluon_timed = [n for n in timed if n != "other"]
    if enabled:
        assert sorted(gluon_timed) == sorted(gluon_mod.CANDIDATES) and timed.count("other") == 2
        assert list(dispatch.choices().values()) == [winner]
        assert runs[-1] == gluon_mod.CANDIDATES[winner] and len(runs) == len(gluon_mod.CANDIDATES) + 1
    else:
        assert gluon_timed == [] and runs == [] and len(timed) == 2


def _need_sm90():
    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the Gluon GEMM is built for compute capability 9.x (Hopper)")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
# (4133, 2304, 136) and (4133, 2304, 64): 1-3 K steps and several tiles per program, so the ring
# holds both ping-pong consumers' steps at once (what their `turn` barriers order)
@pytest.mark.parametrize("M,N,K", [(1, 64, 64), (1001, 136, 264), (4133, 2304, 768), (6304, 768, 3072),
                                   (4133, 2304, 136), (4133, 2304, 64)])
def test_gpu_configs(dtype, M, N, K):
    _need_sm90()
    for cfg in gluon_mod.CONFIGS:
        for residual, bias in ((False, False), (False, True), (True, True), (True, False)):
            a, w, b, r = make((M, K), N, dtype, residual, bias)
            assert gluon_mod.gluon_eligible(a, w, b, epilogue="residual" if residual else "none", residual=r)
            out = poisoned((M, N), dtype, DEVICE)
            got = gluon_mod.matmul_gluon(a, w, b, epilogue="residual" if residual else "none", residual=r,
                                         out=out, config=cfg)
            torch.cuda.synchronize()
            assert got is out
            expect = ref(a, w, b, r)
            err = rel_err(out, expect)
            assert err < tolerance(dtype), f"{cfg} residual={residual} bias={bias}: rel err {err}"
            err = max_err(out, expect)
            assert err < MAX_ERR[dtype], f"{cfg} residual={residual} bias={bias}: max err {err}"


@pytest.mark.gpu
@pytest.mark.parametrize("res_step", [0, 5, None, 11, 99])  # 12 K steps: 11 the last, 99 clamped
def test_gpu_in_place_3d_rows(res_step):
    # out = residual (same view), rows of a [B, T, K] input; residual loaded at various K steps
    _need_sm90()
    a, w, b, r = make((32, 197, 768), 768, torch.bfloat16)  # 150 tiles of 128x256: > 1 per program
    expect = ref(a, w, b, r)
    for cfg in gluon_mod.CONFIGS:
        h = r.clone()
        gluon_mod.matmul_gluon(a, w, b, epilogue="residual", residual=h, out=h, config=cfg, res_step=res_step)
        err = rel_err(h, expect)
        assert err < tolerance(torch.bfloat16), f"{cfg}: rel err {err}"
        assert max_err(h, expect) < MAX_ERR[torch.bfloat16], cfg


def test_cached_gluon_choice_is_checked_again(monkeypatch):
    """A cached Gluon choice whose call the Gluon kernel can no longer take (here VITBENCH_GLUON=0
    set after the choice was made: the cache key leaves it out) runs on the TMA kernel instead."""
    import vitbench.kernels.matmul_tma as tma_mod

    calls = []
    pointer, real_tma = matmul_mod._matmul_pointer, tma_mod.matmul_tma

    def fake_gluon(a, w, bias=None, *, epilogue="none", residual=None, out=None, config=None):
        calls.append("gluon")
        return pointer(a, w, bias, epilogue=epilogue, residual=residual, out=out)

    def fake_timer(fn):  # the Gluon candidates "win"
        before = len(calls)
        fn()
        return 1.0 if calls[before:] == ["gluon"] else 2.0

    monkeypatch.setattr(tma_mod, "matmul_tma", lambda *a, **k: calls.append("tma") or real_tma(*a, **k))
    monkeypatch.setattr(gluon_mod, "matmul_gluon", fake_gluon)
    monkeypatch.setattr(gluon_mod, "gluon_eligible", lambda *a, **k: True)
    monkeypatch.setattr(dispatch, "_median_ms", fake_timer)
    monkeypatch.setattr(matmul_mod, "MODE", "auto")
    monkeypatch.setattr(matmul_mod, "INTERPRETER", False)
    monkeypatch.setattr(matmul_mod, "TMA_MIN_ROWS", 8)
    monkeypatch.setenv("VITBENCH_ROW_SPLIT", "0")
    monkeypatch.setenv("VITBENCH_GLUON", "1")
    a, w, b, r = make((2, 21, 32), 16, torch.float16)
    matmul_mod.matmul(a, w, b, epilogue="residual", residual=r)
    assert list(dispatch.choices().values())[0] in gluon_mod.CANDIDATES and calls[-1] == "gluon"
    calls.clear()
    monkeypatch.setenv("VITBENCH_GLUON", "0")
    got = matmul_mod.matmul(a, w, b, epilogue="residual", residual=r)
    assert calls == ["tma"]
    assert rel_err(got, ref(a, w, b, r)) < tolerance(torch.float16)


@pytest.mark.gpu
def test_gpu_eligibility():
    _need_sm90()
    a, w, b, r = make((300, 64), 64, torch.bfloat16)
    assert gluon_mod.gluon_eligible(a, w, b, epilogue="residual", residual=r, out=r)
    assert not gluon_mod.gluon_eligible(a, w, b, epilogue="gelu")  # epilogue it does not have
    assert not gluon_mod.gluon_eligible(a.float(), w.float())  # fp32
    assert not gluon_mod.gluon_eligible(a[:, :60], w[:, :60])  # K % 8
    assert not gluon_mod.gluon_eligible(a, w, b, epilogue="residual", residual=None)
    t = torch.empty(64, 300, dtype=torch.bfloat16, device=DEVICE)  # a transposed (strided) residual
    assert not gluon_mod.gluon_eligible(a, w, b, epilogue="residual", residual=t.T)
    assert not gluon_mod.gluon_eligible(a, w, b, epilogue="residual", residual=t.T, out=t.T)
