"""matmul_tma's tail split: the last, partial round of tiles of the persistent launch summed in
shares of K by several programs (`tail_split`, `split_reduce`), against float64 references.

CPU (interpreter, 3 "SMs"): configs forced with TAIL_SPLIT=4 on shapes whose last round has one
tile, so it splits; every epilogue, in place, a folded layernorm with row stats, and all tiles in
the tail. The `gpu` set forces the Hopper configs at ViT-B/16 batch 32 (FC2: 36 tail tiles).
"""

from __future__ import annotations

import importlib

import pytest
import torch

from vitbench._backend import DEVICE
from vitbench.kernels._common import _FixedConfig
from vitbench.kernels._lnfold import LNFold, fold_layernorm, row_stats_buffer
from vitbench.numerics import poisoned, rel_err, tolerance
from tests.test_kernels_lnfold import _ln_case, chunk_stats
from tests.test_kernels_matmul_tma import linear_ref, make

T = importlib.import_module("vitbench.kernels.matmul_tma")
MM = importlib.import_module("vitbench.kernels.matmul")

# The interpreter's two configs as tail-split variants (TAIL_SPLIT=4).
CPU_CONFIGS = {"32x64x16": T._cfg(32, 64, 16, 2, 4, subtile=True, tail=4),
               "16x32x32-x2": T._cfg(16, 32, 32, 2, 4, subtile=False, per_sm=2, tail=4)}
# (config, M, N, K): each with a last round of one tile (cfg 32x64x16: 3 programs; 16x32x32-x2: 6)
CASES = [("32x64x16", 100, 40, 112),  # 4 tiles: 3 whole + 1 in 3 shares of its 7 K steps (2, 2, 3)
         ("32x64x16", 20, 40, 96),  # 1 tile, fewer than programs: all of it split (3 shares)
         ("16x32x32-x2", 112, 32, 256)]  # 7 tiles on 6 programs: the 7th in 4 shares


def _split_of(cfg, M, N, K, sms=3) -> int:
    k = cfg.kwargs
    tiles = -(-M // k["BLOCK_M"]) * -(-N // k["BLOCK_N"])
    return T.tail_split(tiles, sms * k["PER_SM"], -(-K // k["BLOCK_K"]), k["TAIL_SPLIT"])


@pytest.fixture
def force(monkeypatch):
    def use(cfg):
        monkeypatch.setattr(T, "_matmul_tma", _FixedConfig(T._matmul_tma_kernel, cfg))
    return use


def test_tail_split_arithmetic():
    # ViT-B/16 at batch 32 (M = 6304) on 132 SMs, 128 x 128 tiles:
    assert T.tail_split(300, 132, 48, 4) == 3  # FC2: 300 tiles, 36 in the last round -> 3 shares
    assert T.tail_split(300, 132, 6, 4) == 3  # out-projection, BLOCK_K 128: 3 shares of 2 K steps
    assert T.tail_split(900, 264, 12, 4) == 2  # QKV, two programs per SM: 108 tail tiles
    assert T.tail_split(1200, 264, 12, 4) == 1  # FC1: 144 tail tiles, more than half the programs
    assert T.tail_split(264, 132, 48, 4) == 1  # whole rounds only
    assert T.tail_split(10, 132, 48, 4) == 4  # fewer tiles than programs: all split, at most 4
    assert T.tail_split(300, 132, 48, 1) == 1  # off
    assert T.tail_split(300, 132, 3, 4) == 1  # a share needs two K steps at least
    for tiles in range(1, 700):  # never more units than programs: one pass over the tail
        for programs in (3, 6, 132, 264):
            s = T.tail_split(tiles, programs, 48, 4)
            assert s == 1 or (tiles % programs) * s <= programs


def test_grid_launches_one_program_per_unit_at_most():
    kw = dict(T._cfg(128, 128, 64, 4, 4, tail=4).kwargs)
    assert T.grid(6304, 768, 3072, 132, kw) == (132,)  # FC2 at batch 32: full rounds + split tail
    assert T.grid(128, 128, 3072, 132, kw) == (4,)  # one tile in 4 shares
    assert T.grid(128, 128, 3072, 132, {**kw, "TAIL_SPLIT": 1}) == (1,)
    assert T.grid(128, 128, 128, 132, kw) == (1,)  # 2 K steps: no split


def test_scratch_sizes_cover_every_splitting_config():
    cfgs = [T._cfg(128, 128, 64, 4, 4, tail=4), T._cfg(128, 256, 64, 3, 8, tail=4)]
    ws, tails = T.tail_scratch_sizes(6304, 768, 3072, 132, cfgs)
    # 128x128: 36 tail tiles x 3 shares; 128x256: 150 tiles, 18 in the tail, 4 shares (7 > 4)
    assert (ws, tails) == (max(36 * 3 * 128 * 128, 18 * 4 * 128 * 256), 36)
    assert T.tail_scratch_sizes(6304, 768, 3072, 132, [T._cfg(128, 128, 64, 4, 4, tail=1)]) == (0, 0)


def test_variants_only_where_they_split(monkeypatch):
    plain, ws = T._cfg(128, 128, 64, 4, 4), T._cfg(128, 128, 64, 4, 4, subtile=False, ws=True)
    pair = T._cfg(128, 128, 64, 3, 4, per_sm=2)
    got = T.with_tail_split([plain, ws, pair], 6304, 768, 3072, 132, split=4)  # FC2, batch 32
    assert [c.kwargs["TAIL_SPLIT"] for c in got] == [1, 4, 1, 1, 4]  # none for warp-specialised
    assert got[1].kwargs == {**plain.kwargs, "TAIL_SPLIT": 4} and got[1].num_warps == 4
    assert got[4].kwargs["PER_SM"] == 2  # 300 tiles on 264 programs: 36 in the tail
    assert T.with_tail_split([plain], 25216, 768, 3072, 132, split=4) == [plain]  # 126 of 132: no
    assert T.with_tail_split([plain], 6304, 768, 3072, 132, split=1) == [plain]  # off
    # the autotuner's prune adds them too (at the launch's M, N, K and SM count)
    a = torch.empty(1, dtype=torch.float16)
    pruned = T.prune_by_smem([plain], {"a_ptr": a, "M": 6304, "N": 768, "K": 3072},
                             EPILOGUE="residual", NUM_SMS=132)
    assert [c.kwargs["TAIL_SPLIT"] for c in pruned] == ([1, T._TAIL] if T._TAIL > 1 else [1])
    monkeypatch.setattr(T, "_TAIL", 4)  # VITBENCH_TAIL_SPLIT=1
    pruned = T.prune_by_smem([plain], {"a_ptr": a, "M": 6304, "N": 768, "K": 3072},
                             EPILOGUE="residual", NUM_SMS=132)
    assert [c.kwargs["TAIL_SPLIT"] for c in pruned] == [1, 4]


@pytest.mark.parametrize("name,M,N,K", CASES, ids=[f"{c[0]}-M{c[1]}" for c in CASES])
@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual", "gelu_residual"])
def test_split_tail_matches_reference(force, name, M, N, K, epilogue):
    cfg = CPU_CONFIGS[name]
    assert _split_of(cfg, M, N, K) > 1, "the case must split its tail"
    force(cfg)
    a, w, bias, res, shape = make((M, K), N, torch.float16, epilogue)
    out = poisoned(shape, torch.float16, DEVICE)
    T.matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=out)
    assert rel_err(out, linear_ref(a, w, bias, epilogue, res)) < tolerance(torch.float16)
    again = poisoned(shape, torch.float16, DEVICE)
    T.matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=again)
    assert torch.equal(out, again), "the split sums must come out the same every run"
    assert all(int(c.abs().sum()) == 0 for c in MM._COUNTERS.values()), "arrival counters left set"


@pytest.mark.parametrize("name,M,N,K", CASES[:1] + CASES[2:], ids=["32x64x16", "16x32x32-x2"])
def test_split_tail_in_place_residual(force, name, M, N, K):
    force(CPU_CONFIGS[name])
    a, w, bias, res, _ = make((M, K), N, torch.float16, "residual")
    expect = linear_ref(a, w, bias, "residual", res)
    got = T.matmul_tma(a, w, bias, epilogue="residual", residual=res, out=res)
    assert got is res and rel_err(res, expect) < tolerance(torch.float16)  # added exactly once


def test_split_tail_with_folded_layernorm_and_row_stats(force):
    # 100 rows x 64 columns: 4 tiles of 32 x 64 on 3 programs, K = 96 -> the 4th tile in 3 shares;
    # the tail tile's epilogue applies the folded layernorm and stores its rows' stats.
    cfg = CPU_CONFIGS["32x64x16"]
    assert _split_of(cfg, 100, 64, 96) == 3
    force(cfg)
    x, gamma, beta, w, b, eps, want = _ln_case(torch.float16, rows=(100,), K=96, N=64, shift=2.0)
    w_f, b_f, colsum = fold_layernorm(gamma, beta, w, b)
    stats = row_stats_buffer(100, 64, torch.device(DEVICE))
    r = make((100, 64), 64, torch.float16, "none")[0]
    ln = LNFold(chunk_stats(x).float().contiguous(), colsum, eps)
    out = T.matmul_tma(x, w_f, b_f, epilogue="residual", residual=r, ln=ln, row_stats=stats)
    assert rel_err(out, want + r.double()) < tolerance(torch.float16)
    torch.testing.assert_close(stats.double(), chunk_stats(out.float()), rtol=1e-5, atol=1e-3)


def test_probe_launches_tail_variants_right():
    """tools/epilogue_probe.py --tail launches the kernel itself (not through matmul_tma): its
    grid, workspace and counters must match what the kernel does."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "epilogue_probe.py"
    spec = importlib.util.spec_from_file_location("epilogue_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    name, M, N, K = CASES[0]
    cfg = CPU_CONFIGS[name]
    variants = T.with_tail_split([T._cfg(32, 64, 16, 2, 4)], M, N, K, 3, split=T.TAIL_SPLIT_MAX)
    assert [c.kwargs["TAIL_SPLIT"] for c in variants] == [1, 4] and variants[1].kwargs == cfg.kwargs
    assert probe.tag(variants[1]).endswith("tail4")
    a, w, bias, res, shape = make((M, K), N, torch.float16, "residual")
    T._ensure_allocator()
    for c in variants:
        out = poisoned(shape, torch.float16, DEVICE)
        probe.run_config(c, a, w, bias, res, out, "residual", 3)
        assert rel_err(out, linear_ref(a, w, bias, "residual", res)) < tolerance(torch.float16)


def test_tail_split_env(monkeypatch):
    from vitbench.errors import VitbenchError

    monkeypatch.setenv(T.TAIL_SPLIT_ENV, "0")
    assert T.tail_split_setting() is False
    monkeypatch.setenv(T.TAIL_SPLIT_ENV, "1")
    assert T.tail_split_setting() is True
    monkeypatch.setenv(T.TAIL_SPLIT_ENV, "yes")
    with pytest.raises(VitbenchError, match=T.TAIL_SPLIT_ENV):
        T.tail_split_setting()


# -------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name,N,K,epilogue", [("fc2", 768, 3072, "residual"), ("proj", 768, 768, "residual"),
                                               ("qkv", 2304, 768, "none")])
def test_gpu_every_tail_variant_at_batch32(force, dtype, name, N, K, epilogue):
    # Every tail-split variant the autotuner could try at ViT-B/16 batch 32, forced.
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the TMA kernel needs sm_90")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    a, w, bias, res, shape = make((32, 197, K), N, dtype, epilogue)
    f = lambda t: None if t is None else t.float()  # noqa: E731
    expect = linear_ref(f(a), f(w), f(bias), epilogue, f(res))
    fitting = [c for c in T.TMA_CONFIGS if T.fits(c, 2, res is not None)]
    variants = [c for c in T.with_tail_split(fitting, 32 * 197, N, K, sms, split=4) if c.kwargs["TAIL_SPLIT"] > 1]
    assert variants, "no config splits its tail at this shape"
    for cfg in variants:
        force(cfg)
        out = poisoned(shape, dtype, DEVICE)
        T.matmul_tma(a, w, bias, epilogue=epilogue, residual=res, out=out)
        assert rel_err(out, expect) < tolerance(dtype), f"{cfg}"
