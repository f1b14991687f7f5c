"""Two-pass split-K GEMM (kernels/matmul_splitk.py): the result against float64 on poisoned
outputs, its candidates per shape, and the timed, cached choice for a row split's second GEMM.

CPU (Triton interpreter): small fp32 / fp16 shapes, the choice made with a fake timer. The `gpu`
set runs every candidate at the ViT-B/16 batch-32 and batch-8 rests in bf16 and fp16 against an
fp32 reference (the real choice inside matmul() is test_kernels_rowsplit's GPU test).
"""

from __future__ import annotations

import importlib

import pytest
import torch

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.numerics import poisoned, rel_err, tolerance

from test_kernels_matmul_tma import linear_ref, make, ref32

matmul_mod = importlib.import_module("vitbench.kernels.matmul")
splitk = importlib.import_module("vitbench.kernels.matmul_splitk")
rowsplit = importlib.import_module("vitbench.kernels._rowsplit")
dispatch = importlib.import_module("vitbench.kernels._dispatch")
TwoPass = splitk.TwoPass

pytestmark = pytest.mark.usefixtures("fresh_gemm_choices")
SMALL = TwoPass(16, 32, 16, 2, 4, 3)  # the interpreter's tile, 3 shares


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("epilogue", ["none", "gelu", "gelu_tanh", "residual", "gelu_residual"])
def test_two_pass_matches_float64(dtype, epilogue):
    """3-D input, irregular sizes (rows, columns and K not multiples of the tile), every epilogue:
    every output element written (no NaN of the poison left) and within the dtype's tolerance."""
    a, w, bias, res, shape = make((2, 37, 70), 45, dtype, epilogue)
    out = poisoned(shape, dtype, DEVICE)
    got = splitk.matmul_splitk(a, w, bias, config=SMALL, epilogue=epilogue, residual=res, out=out)
    assert got is out
    assert rel_err(out, linear_ref(a, w, bias, epilogue, res)) < tolerance(dtype)


@pytest.mark.parametrize("split", [1, 2, 4, 5])
def test_two_pass_any_split_no_bias_strided(split):
    """K = 70 in 5 steps of 16: splits of 1 to 5 (4: shares of 2, 2, 1 and an empty one, which
    adds zeros). No bias; A a column slice of a wider tensor, W a transposed view, out a strided
    view of a poisoned buffer."""
    a = torch.randn(41, 90)[:, 10:80]
    w = torch.randn(70, 33).t()
    buf = poisoned((41, 66), torch.float32, DEVICE)
    out = buf[:, ::2]
    splitk.matmul_splitk(a, w, None, config=TwoPass(16, 32, 16, 2, 4, split), out=out)
    assert rel_err(out, linear_ref(a, w, None, "none", None)) < tolerance(torch.float32)
    assert torch.isnan(buf[:, 1::2]).all()  # the columns between out's are untouched


def test_two_pass_3d_strided_out_and_residual():
    """3-D input, out every other column of a poisoned buffer, the residual a transposed view."""
    a, w, bias, _, _ = make((3, 21, 40), 24, torch.float32, "none")
    res = torch.randn(3, 24, 21).transpose(1, 2)
    buf = poisoned((3, 21, 48), torch.float32, DEVICE)
    out = buf[..., ::2]
    splitk.matmul_splitk(a, w, bias, config=SMALL, epilogue="residual", residual=res, out=out)
    assert rel_err(out, linear_ref(a, w, bias, "residual", res)) < tolerance(torch.float32)
    assert torch.isnan(buf[..., 1::2]).all()


def test_two_pass_in_place_residual():
    """out is the residual (x = x + f(x)): the residual is added exactly once."""
    a, w, bias, res, _ = make((50, 40), 24, torch.float16, "residual")
    h = res.clone()
    got = splitk.matmul_splitk(a, w, bias, config=SMALL, epilogue="residual", residual=h, out=h)
    assert got.data_ptr() == h.data_ptr()
    assert rel_err(h, linear_ref(a, w, bias, "residual", res)) < tolerance(torch.float16)


def test_two_pass_user_mistakes():
    a, w, bias, res, _ = make((20, 32), 24, torch.float16, "residual")
    with pytest.raises(VitbenchError, match="needs a residual"):
        splitk.matmul_splitk(a, w, bias, config=SMALL, epilogue="residual")
    with pytest.raises(VitbenchError, match="w has shape"):
        splitk.matmul_splitk(a, w[:, :16], bias, config=SMALL)
    with pytest.raises(VitbenchError, match="TwoPass"):
        splitk.matmul_splitk(a, w, bias, config=(16, 32, 16, 2, 4, 3))
    for bad in (TwoPass(16, 24, 16, 2, 4, 2), TwoPass(16, 32, 8, 2, 4, 2), TwoPass(16, 32, 16, 2, 3, 2),
                TwoPass(16, 32, 16, 2, 4, 0), TwoPass(16, 32, 16, 2, 4, True), TwoPass(16, 32, 16, 2, 4, 2.5)):
        with pytest.raises(VitbenchError, match="TwoPass"):
            splitk.matmul_splitk(a, w, bias, config=bad)
    buf = torch.randn(21, 24).half()
    with pytest.raises(VitbenchError, match="overlaps"):
        splitk.matmul_splitk(a, w, bias, config=SMALL, epilogue="residual", residual=buf[:20],
                             out=buf[1:])
    empty = splitk.matmul_splitk(a[:0], w, bias, config=SMALL)
    assert tuple(empty.shape) == (0, 24)


HOPPER_TILES = [(128, 256, 64, 3, 8), (128, 128, 64, 4, 8), (64, 256, 64, 4, 4)]


@pytest.mark.parametrize("M,N,K", [(672, 768, 3072), (672, 2304, 768), (672, 3072, 768),
                                   (168, 768, 3072), (197, 768, 3072), (5632, 768, 768), (13, 7, 5)])
@pytest.mark.parametrize("sms", [2, 108, 132])
def test_candidates_fill_at_most_one_round(monkeypatch, M, N, K, sms):
    """Each candidate: tiles * SPLIT <= SMs, SPLIT >= 2, at least MIN_STEPS K steps per share and
    no empty share, the workspace within MAX_WS_BYTES; none for shapes whose tiles fill a round."""
    monkeypatch.setattr(splitk, "TILES", HOPPER_TILES)
    got = splitk.candidates(M, N, K, sms)
    for c in got:
        tiles = -(-M // c.bm) * -(-N // c.bn)
        steps = -(-K // c.bk)
        share = -(-steps // c.split)
        assert c.split >= 2 and tiles * c.split <= sms
        assert share >= splitk.MIN_STEPS and (c.split - 1) * share < steps
        assert 4 * c.split * M * N <= splitk.MAX_WS_BYTES
    tiles_of = {(bm, bn): -(-M // bm) * -(-N // bn) for bm, bn, *_ in HOPPER_TILES}
    assert {(c.bm, c.bn) for c in got} <= {t for t, n in tiles_of.items() if 2 * n <= sms}


def test_candidates_vit_b16_batch32_rests():
    """The batch-32 rests on 132 SMs: FC2 (K = 3072) gets all three tiles, QKV the 128x256 one in
    two shares, FC1 (3,072 columns: 72 tiles of 128x256) none."""
    tiles = {"TILES": HOPPER_TILES}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in tiles.items():
            mp.setattr(splitk, k, v)
        assert [c.tag for c in splitk.candidates(672, 768, 3072, 132)] == [
            "2pass 128x256x64 s3 w8 k7", "2pass 128x128x64 s4 w8 k3", "2pass 64x256x64 s4 w4 k4"]
        assert [c.tag for c in splitk.candidates(672, 2304, 768, 132)] == ["2pass 128x256x64 s3 w8 k2"]
        assert splitk.candidates(672, 3072, 768, 132) == []


def _as_if_on_a_gpu(monkeypatch, winners):
    """matmul() times here (interpreter, CPU): the row split sees 2 SMs, the two-pass 8. The fake
    timer runs each candidate once and ranks first, per choice, the name starting with
    winners[key[0]]. Returns the list of (choice, name) timed."""
    timed = []
    real_fastest = dispatch.fastest

    def fake_fastest(key, candidates, timer=None):
        names = iter(list(candidates))  # real_fastest times them in this order

        def fake_timer(fn):
            name = next(names)
            fn()
            timed.append((key[0], name))
            return 1.0 if name.startswith(winners[key[0]]) else 2.0
        return real_fastest(key, candidates, timer=fake_timer)

    monkeypatch.setattr(rowsplit, "_timed_here", lambda a: True)
    monkeypatch.setattr(rowsplit, "_sm_count", lambda index: 2)
    monkeypatch.setattr(splitk, "_sm_count", lambda index: 8)
    monkeypatch.setattr(dispatch, "fastest", fake_fastest)
    monkeypatch.delenv(rowsplit.ROW_SPLIT_ENV, raising=False)
    monkeypatch.delenv(splitk.TWO_PASS_ENV, raising=False)
    return timed


@pytest.mark.parametrize("winner", ["2pass", "whole"])
def test_row_split_rest_times_two_pass_once(monkeypatch, winner):
    """150 rows on 2 SMs split at 128; the 22-row rest (K = 96: 6 steps, 2 tiles of 16x32 on 8
    SMs -> one candidate in 2 shares) is timed as one GEMM and as the two-pass, once; the real
    calls run the cached pick, in place, the residual added once."""
    timed = _as_if_on_a_gpu(monkeypatch, {"matmul-rows": "rows", "matmul-2pass": winner})
    runs = []
    real = splitk.matmul_splitk
    monkeypatch.setattr(splitk, "matmul_splitk", lambda *a, **k: runs.append(k["config"]) or real(*a, **k))
    a, w, bias, res, _ = make((150, 96), 24, torch.float16, "residual")
    expect = linear_ref(a, w, bias, "residual", res)
    for _ in range(2):
        h = res.clone()
        matmul_mod.matmul(a, w, bias, epilogue="residual", residual=h, out=h)
        assert rel_err(h, expect) < tolerance(torch.float16)
    assert timed == [("matmul-rows", "whole"), ("matmul-2pass", "whole"),
                     ("matmul-2pass", "2pass 16x32x16 s2 w4 k2"), ("matmul-rows", "rows 128+22")]
    picks = {k[0]: (k[1], p) for k, p in dispatch.choices().items()}
    assert picks["matmul-2pass"] == ((22, 96), "whole" if winner == "whole" else "2pass 16x32x16 s2 w4 k2")
    # its own timing; then, if it won, the rest of the timed split and of the two real calls
    assert len(runs) == (4 if winner == "2pass" else 1)


def test_two_pass_off_and_bad_setting(monkeypatch):
    """VITBENCH_TWO_PASS=0: the rest is one GEMM, untimed; a bad value is a VitbenchError."""
    timed = _as_if_on_a_gpu(monkeypatch, {"matmul-rows": "rows", "matmul-2pass": "2pass"})
    a, w, bias, _, _ = make((150, 96), 24, torch.float16, "none")
    monkeypatch.setenv(splitk.TWO_PASS_ENV, "0")
    out = matmul_mod.matmul(a, w, bias)
    assert rel_err(out, linear_ref(a, w, bias, "none", None)) < tolerance(torch.float16)
    assert [k for k, _ in timed] == ["matmul-rows", "matmul-rows"]
    monkeypatch.delenv(splitk.TWO_PASS_ENV)  # on again: the split is timed again, with the two-pass
    matmul_mod.matmul(a, w, bias)
    assert [k for k, _ in timed][2:] == ["matmul-rows", "matmul-2pass", "matmul-2pass", "matmul-rows"]
    assert sorted(k[-1] for k in dispatch.choices() if k[0] == "matmul-rows") == [False, True]
    monkeypatch.setenv(splitk.TWO_PASS_ENV, "2")
    with pytest.raises(VitbenchError, match="VITBENCH_TWO_PASS='2'"):
        splitk.two_pass_setting()
    dispatch.reset()
    with pytest.raises(VitbenchError, match="VITBENCH_TWO_PASS='2'"):  # not swallowed by the timing
        matmul_mod.matmul(a, w, bias)
    assert dispatch.choices() == {}


def test_choose_is_none_off_the_gpu():
    a, w, bias, _, _ = make((50, 96), 24, torch.float16, "none")
    assert splitk.choose(matmul_mod._matmul_whole, a, w, bias, "none", None, None) is None
    assert dispatch.choices() == {}


# --- GPU -----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("M,N,K,epilogue", [
    (672, 768, 3072, "residual"), (672, 2304, 768, "none"), (672, 768, 768, "residual"),
    (168, 768, 3072, "residual"), (168, 3072, 768, "gelu"), (197, 768, 3072, "gelu_residual"),
])
def test_gpu_every_candidate(dtype, M, N, K, epilogue):
    """Every candidate at the ViT-B/16 rests (batch 32: 672 rows, batch 8: 168) and batch 1's
    FC2, against float32 torch on a poisoned output, in place for the residual epilogues."""
    configs = splitk.candidates(M, N, K, torch.cuda.get_device_properties(0).multi_processor_count)
    assert configs
    a, w, bias, res, shape = make((M, K), N, dtype, epilogue)
    expect = ref32(a, w, bias, epilogue, res)
    for c in configs:
        out = res.clone() if res is not None else poisoned(shape, dtype, DEVICE)
        splitk.matmul_splitk(a, w, bias, config=c, epilogue=epilogue,
                             residual=out if res is not None else None, out=out)
        assert rel_err(out, expect) < tolerance(dtype), c.tag
