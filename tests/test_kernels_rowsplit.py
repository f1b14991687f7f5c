"""Row split of a GEMM (kernels/_rowsplit.py): the split points, the two-launch result against
float64, and the timed, cached choice in matmul().

CPU (Triton interpreter): small fp16 shapes, the choice made with a fake timer. The `gpu` set runs
the real choice at the ViT-B/16 batch-32 FC2 shape, in place, against an fp32 reference.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.numerics import poisoned, rel_err, tolerance

from test_kernels_matmul_tma import linear_ref, make, ref32

matmul_mod = importlib.import_module("vitbench.kernels.matmul")
rowsplit = importlib.import_module("vitbench.kernels._rowsplit")
dispatch = importlib.import_module("vitbench.kernels._dispatch")

pytestmark = pytest.mark.usefixtures("fresh_gemm_choices")


def test_split_points_vit_b16_on_132_sms():
    """ViT-B/16 row counts (197 per image) on an H100's 132 SMs: batch 32 splits at 5,632 rows
    (whole rounds of every tile shape), batch 8 at 1,408, batch 1 and 256 not at all."""
    for n in (768, 2304, 3072):
        assert rowsplit.split_points(32 * 197, n, 132) == (5632,)
        assert rowsplit.split_points(8 * 197, n, 132) == (1408,)
        assert rowsplit.split_points(197, n, 132) == ()
        assert rowsplit.split_points(256 * 197, n, 132) == ()


@pytest.mark.parametrize("M", [150, 197, 1000, 1576, 6304, 25216, 50432])
@pytest.mark.parametrize("N", [32, 768, 2304])
@pytest.mark.parametrize("sms", [2, 108, 132])
def test_split_points_are_whole_rounds(M, N, sms):
    """Each point: rows [0, m1) are whole rounds for some tile shape that wastes more than
    MIN_WASTE of its rounds on all M rows, and the rest is at most MAX_REST of M."""
    points = rowsplit.split_points(M, N, sms)
    assert len(points) <= rowsplit.MAX_POINTS and list(points) == sorted(points, reverse=True)
    for m1 in points:
        assert 0 < m1 < M and M - m1 <= rowsplit.MAX_REST * M

        def whole_rounds(bm, bn):
            tiles = -(-M // bm) * -(-N // bn)
            wasteful = 1 - tiles / sms / math.ceil(tiles / sms) > rowsplit.MIN_WASTE
            return wasteful and m1 % bm == 0 and (m1 // bm) * -(-N // bn) % sms == 0

        assert any(whole_rounds(bm, bn) for bm, bn in rowsplit.TILES)


@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual"])
def test_run_split_matches_float64(epilogue):
    """Two launches over row ranges of a 3-D input give the unsplit contract (bias, epilogue,
    every output row written: the poisoned output has no NaN left)."""
    a, w, bias, res, shape = make((3, 50, 32), 24, torch.float16, epilogue)
    out = poisoned(shape, torch.float16, DEVICE)
    got = rowsplit.run_split(matmul_mod._matmul_whole, 128, a, w, bias, epilogue, res, out)
    assert got.data_ptr() == out.data_ptr()
    assert rel_err(out, linear_ref(a, w, bias, epilogue, res)) < tolerance(torch.float16)


def _as_if_on_a_gpu(monkeypatch, winner):
    """choose() times candidates here (interpreter, CPU) on 2 SMs; the fake timer runs each
    candidate once and ranks the one named `winner` first. Returns the list of timed names."""
    timed = []
    names = iter(())

    def fake_fastest(key, candidates, timer=None):
        def fake_timer(fn):
            name = next(names)
            fn()
            timed.append(name)
            return 1.0 if name.startswith(winner) else 2.0
        nonlocal names
        names = iter(list(candidates))
        return real_fastest(key, candidates, timer=fake_timer)

    real_fastest = dispatch.fastest
    monkeypatch.setattr(rowsplit, "_timed_here", lambda a: True)
    monkeypatch.setattr(rowsplit, "_sm_count", lambda index: 2)
    monkeypatch.setattr(importlib.import_module("vitbench.kernels.matmul_splitk"), "_sm_count",
                        lambda index: 2)  # the rests' two-pass: no candidate on 2 SMs
    monkeypatch.setattr(rowsplit._dispatch, "fastest", fake_fastest)
    monkeypatch.delenv(rowsplit.ROW_SPLIT_ENV, raising=False)
    return timed


@pytest.mark.parametrize("winner", ["rows", "whole"])
def test_matmul_times_the_split_once_and_keeps_the_faster(monkeypatch, winner):
    """150 rows on 2 SMs (64-row tiles: 1.5 rounds) -> split point 128. The first call times the
    whole GEMM and the split on scratch outputs (an in-place residual is added once), caches the
    faster; the second call times nothing and runs the cached choice."""
    assert rowsplit.split_points(150, 24, 2) == (128,)
    timed = _as_if_on_a_gpu(monkeypatch, winner)
    runs = []
    real_run = rowsplit.run_split
    monkeypatch.setattr(rowsplit, "run_split", lambda *a, **k: runs.append(1) or real_run(*a, **k))
    a, w, bias, res, _ = make((150, 32), 24, torch.float16, "residual")
    expect = linear_ref(a, w, bias, "residual", res)
    for _ in range(2):
        h = res.clone()
        got = matmul_mod.matmul(a, w, bias, epilogue="residual", residual=h, out=h)
        assert got.data_ptr() == h.data_ptr()
        assert rel_err(h, expect) < tolerance(torch.float16)
    assert timed == ["whole", "rows 128+22"]
    (key, pick), = dispatch.choices().items()
    assert key[0] == "matmul-rows" and pick.startswith(winner)
    assert len(runs) == 1 + (2 if winner == "rows" else 0)  # the timing run, then the real calls


def test_matmul_row_split_off_and_not_applicable(monkeypatch):
    """VITBENCH_ROW_SPLIT=0, a shape with no split point, fp32 and a bad value time nothing."""
    timed = _as_if_on_a_gpu(monkeypatch, "rows")
    a, w, bias, _, _ = make((150, 32), 24, torch.float16, "none")
    monkeypatch.setenv(rowsplit.ROW_SPLIT_ENV, "0")
    assert rel_err(matmul_mod.matmul(a, w, bias), linear_ref(a, w, bias, "none", None)) < tolerance(torch.float16)
    monkeypatch.delenv(rowsplit.ROW_SPLIT_ENV)
    a2, w2, b2, _, _ = make((128, 32), 24, torch.float16, "none")  # whole rounds already
    matmul_mod.matmul(a2, w2, b2)
    matmul_mod.matmul(a.float(), w.float(), bias.float())  # fp32: never split
    assert timed == [] and dispatch.choices() == {}
    monkeypatch.setenv(rowsplit.ROW_SPLIT_ENV, "yes")
    with pytest.raises(VitbenchError, match="VITBENCH_ROW_SPLIT='yes'"):
        matmul_mod.matmul(a, w, bias)


def test_split_points_degenerate_shapes():
    for M, N, sms in ((0, 768, 132), (6304, 0, 132), (6304, 768, 0), (1, 1, 1)):
        assert rowsplit.split_points(M, N, sms) == ()


def test_matmul_empty_shapes_are_not_split(monkeypatch):
    """M, N or K of 0: the whole call's result (empty, or bias only), nothing timed."""
    timed = _as_if_on_a_gpu(monkeypatch, "rows")
    for shape_a, n in (((0, 32), 24), ((2, 0, 32), 24), ((150, 32), 0), ((150, 0), 24)):
        a = torch.randn(*shape_a).half()
        w, bias = torch.randn(n, shape_a[-1]).half(), torch.randn(n).half()
        shape = (*shape_a[:-1], n)
        got = matmul_mod.matmul(a, w, bias)
        assert tuple(got.shape) == shape
        if got.numel():
            assert rel_err(got, linear_ref(a, w, bias, "none", None)) < tolerance(torch.float16)
    assert timed == [] and dispatch.choices() == {}


def test_matmul_out_overlapping_an_input_across_the_halves_is_an_error(monkeypatch):
    """out overlapping the residual only in rows the other half reads: the whole call's error,
    before anything is timed or written."""
    timed = _as_if_on_a_gpu(monkeypatch, "rows")
    a, w, bias, _, _ = make((150, 32), 24, torch.float16, "none")
    buf = torch.randn(278, 24).half()
    before = buf.clone()
    with pytest.raises(VitbenchError, match="overlaps residual"):
        matmul_mod.matmul(a, w, bias, epilogue="residual", residual=buf[0:150], out=buf[128:278])
    assert timed == [] and torch.equal(buf, before)


def test_split_is_timed_in_the_real_calls_layout(monkeypatch):
    """A strided out (every other column of a wider buffer): the timed halves write outputs of
    the real out's strides, so their own choices are the ones the real call looks up."""
    _as_if_on_a_gpu(monkeypatch, "rows")
    seen = []
    real = matmul_mod._matmul_whole

    def spy(a, w, bias=None, **kw):
        seen.append(kw["out"].stride())
        return real(a, w, bias, **kw)

    monkeypatch.setattr(matmul_mod, "_matmul_whole", spy)
    a, w, bias, _, _ = make((150, 32), 24, torch.float16, "none")
    wide = poisoned((150, 48), torch.float16, DEVICE)
    out = wide[:, ::2]
    matmul_mod.matmul(a, w, bias, out=out)
    assert rel_err(out, linear_ref(a, w, bias, "none", None)) < tolerance(torch.float16)
    assert len(seen) == 1 + 2 + 2 and set(seen) == {out.stride()}  # whole, split, the real halves


def test_matmul_user_mistakes_still_get_their_errors(monkeypatch):
    """Malformed arguments skip the split and reach the whole GEMM's checks."""
    _as_if_on_a_gpu(monkeypatch, "rows")
    a, w, bias, res, _ = make((150, 32), 24, torch.float16, "residual")
    with pytest.raises(VitbenchError, match="needs a residual"):
        matmul_mod.matmul(a, w, bias, epilogue="residual")
    with pytest.raises(VitbenchError, match="residual has shape"):
        matmul_mod.matmul(a, w, bias, epilogue="residual", residual=res[:-1])
    with pytest.raises(VitbenchError, match="w has shape"):
        matmul_mod.matmul(a, w[:, :16], bias)
    assert dispatch.choices() == {}


@pytest.mark.gpu
def test_gpu_row_split_fc2_batch32_in_place(monkeypatch):
    """The real choice at the ViT-B/16 batch-32 FC2 shape, residual in place: timed once (whole
    and 5,632 + 672 rows), the residual added exactly once, the result within bf16 tolerance;
    forcing the split gives the same result. The split's 672-row rest is timed as one GEMM and as
    each two-pass candidate (kernels/matmul_splitk.py: a "matmul-2pass" choice is cached)."""
    monkeypatch.delenv(rowsplit.ROW_SPLIT_ENV, raising=False)
    monkeypatch.delenv("VITBENCH_TWO_PASS", raising=False)
    a, w, bias, res, _ = make((32, 197, 3072), 768, torch.bfloat16, "residual")
    expect = ref32(a, w, bias, "residual", res)
    h = res.clone()
    matmul_mod.matmul(a, w, bias, epilogue="residual", residual=h, out=h)
    assert rel_err(h, expect) < tolerance(torch.bfloat16)
    (key, pick), = [(k, p) for k, p in dispatch.choices().items() if k[0] == "matmul-rows"]
    assert pick in ("whole", "rows 5632+672")
    assert any(k[0] == "matmul-2pass" for k in dispatch.choices())
    monkeypatch.setattr(dispatch, "_median_ms", lambda fn: pytest.fail("timed twice"))
    h = res.clone()
    matmul_mod.matmul(a, w, bias, epilogue="residual", residual=h, out=h)  # the cached choice
    assert rel_err(h, expect) < tolerance(torch.bfloat16)
    h = res.clone()
    rowsplit.run_split(matmul_mod._matmul_whole, 5632, a, w, bias, "residual", h, h)
    assert rel_err(h, expect) < tolerance(torch.bfloat16)
