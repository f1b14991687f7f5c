"""matmul's split-K configs (several programs per output tile, one launch; `split_k_reduce`).

Split-K configs are not autotuned yet (matmul.SPLIT_K_CONFIGS says why), so these tests force one
on the pointer kernel: on CPU the interpreter's (SPLIT_K=4), in the `gpu` set every Hopper one
that fits shared memory at ViT-B/16 batch-1 shapes (and batch 8 where split_k_ok allows it).
Checked: values against float64 (every epilogue, ragged K, a share of K that is empty, 3-D rows,
in-place residual) and counters left at 0. The same bits on every run is a GPU check only: the
interpreter runs a tile's programs in order, so the last to arrive is always the last split.
"""

from __future__ import annotations

import pytest
import torch
import triton

from vitbench._backend import DEVICE, INTERPRETER
from vitbench.kernels import _common, matmul
from vitbench.numerics import poisoned, rel_err, tolerance
from tests.test_kernels_gemm import linear_ref, rand

import importlib

mm = importlib.import_module("vitbench.kernels.matmul")  # the module (the package exports the function)
SPLIT_CONFIGS = mm.SPLIT_K_CONFIGS


@pytest.fixture
def force_config(monkeypatch):
    """force_config(cfg): the pointer kernel launches with `cfg` only, no autotuning."""

    def force(cfg):
        fixed = _common._FixedConfig(mm._heuristic(mm._matmul_kernel), cfg)
        monkeypatch.setattr(mm, "_matmul", fixed)
        monkeypatch.setattr(mm, "MODE", "pointer")

    return force


def counters_clear() -> bool:
    return all(int(c.abs().sum()) == 0 for c in mm._COUNTERS.values())


def run_case(shape_a, N, dtype, epilogue, precision="ieee", inplace=False):
    K = shape_a[-1]
    a = rand(*shape_a, dtype=dtype)
    w = rand(N, K, dtype=dtype, scale=K ** -0.5)
    bias = rand(N, dtype=dtype)
    out_shape = (*shape_a[:-1], N)
    residual = rand(*out_shape, dtype=dtype) if "residual" in epilogue else None
    ref = linear_ref(a, w, bias, epilogue, residual)
    if inplace:
        out = residual
    else:
        out = poisoned(out_shape, dtype, DEVICE)
    got = matmul(a, w, bias, epilogue=epilogue, residual=residual, precision=precision, out=out)
    assert got is out
    assert rel_err(got, ref) < tolerance(dtype, precision), epilogue
    assert counters_clear()
    return a, w, bias, residual, got


def test_interpreter_has_a_split_config():
    assert SPLIT_CONFIGS and all(c.kwargs["SPLIT_K"] > 1 for c in SPLIT_CONFIGS)
    assert all(c.kwargs["SPLIT_K"] == 1 for c in mm.GEMM_CONFIGS + mm.FP32_CONFIGS)  # not autotuned


@pytest.mark.skipif(not INTERPRETER, reason="the interpreter's split-K config; the gpu set forces the real ones")
@pytest.mark.parametrize("epilogue", ["none", "gelu", "residual", "gelu_residual"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_split_k_matches_reference(force_config, epilogue, dtype):
    force_config(SPLIT_CONFIGS[0])
    # BLOCK_K 16, SPLIT_K 4 (split_k_ok: at least 8 K steps). K=140: 9 steps -> shares of 3, 3, 3
    # (the third ragged: 12 of its 48) and an empty fourth (its partial is 0). K=128: 8 x 16.
    run_case((37, 140), 45, dtype, epilogue)
    run_case((37, 128), 29, dtype, epilogue)


@pytest.mark.skipif(not INTERPRETER, reason="the interpreter's split-K config")
def test_split_k_3d_rows_inplace_and_deterministic(force_config):
    force_config(SPLIT_CONFIGS[0])
    run_case((2, 19, 136), 33, torch.float32, "residual", inplace=True)
    run_case((3, 11, 160), 40, torch.float32, "gelu", precision="tf32")
    a, w, bias, _, first = run_case((40, 192), 36, torch.float32, "none")
    again = matmul(a, w, bias)
    assert torch.equal(first, again)


def test_split_k_prune_rules():
    cfg = mm.matmul_config(64, 64, 64, 4, 4, split=4)
    assert mm.split_ws_elems(cfg, 197, 768) == 4 * 256 * 768
    assert mm.split_k_ok(cfg, 197, 768, 3072)  # 48 K steps, 3 MB workspace
    assert not mm.split_k_ok(cfg, 197, 768, 448)  # 7 K steps: fewer than 2 per share
    assert not mm.split_k_ok(cfg, 50432, 3072, 768)  # a 2.5 GB workspace
    plain = mm.matmul_config(64, 64, 64, 4, 4)
    assert mm.split_ws_elems(plain, 10 ** 6, 10 ** 4) == 0 and mm.split_k_ok(plain, 10 ** 6, 10 ** 4, 16)
    half = torch.empty(1, dtype=torch.float16)
    kept = mm.prune_by_smem([plain, cfg], {"a_ptr": half}, M=197, N=768, K=3072)
    assert kept == [plain, cfg]
    assert mm.prune_by_smem([plain, cfg], {"a_ptr": half}, M=50432, N=3072, K=768) == [plain]


def test_split_buffers_fit_the_config_launched():
    for c in SPLIT_CONFIGS:  # forced: sized for that config, even past split_k_ok
        fixed = _common._FixedConfig(None, c)
        for M, N, K in ((197, 768, 3072), (1576, 3072, 768), (37, 45, 140)):
            ws, counters = mm._split_buffers(M, N, K, torch.device(DEVICE), fixed)
            tiles = -(-M // c.kwargs["BLOCK_M"]) * -(-N // c.kwargs["BLOCK_N"])
            assert ws.dtype == torch.float32 and counters.dtype == torch.int32
            assert ws.numel() >= mm.split_ws_elems(c, M, N) and counters.numel() >= tiles
    # the autotuner (no split config among its configs): shared 1-element placeholders, no allocation
    first = mm._split_buffers(197, 768, 3072, torch.device(DEVICE), mm._matmul)
    again = mm._split_buffers(50432, 3072, 768, torch.device(DEVICE), mm._matmul)
    assert first[0].numel() == 1 and first[0] is again[0] and first[1] is again[1]


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", SPLIT_CONFIGS, ids=lambda c: "x".join(
    str(c.kwargs[k]) for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT_K")))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_gpu_split_k_vit_small_batch(force_config, cfg, dtype):
    k = cfg.kwargs
    smem = cfg.num_stages * (k["BLOCK_M"] + k["BLOCK_N"]) * k["BLOCK_K"] * dtype.itemsize
    if smem > mm._SMEM_BYTES:  # e.g. 4-stage 64x64x128 in fp32 (prune_by_smem's rule)
        pytest.skip("does not fit shared memory at this dtype: autotuning would never launch it")
    force_config(cfg)
    # ViT-B/16 batch 1 FC2 (+ residual), then the same bits again
    try:
        a, w, bias, residual, first = run_case((197, 3072), 768, dtype, "residual")
    except triton.runtime.errors.OutOfResources as e:  # the autotuner, too, skips such a config
        pytest.skip(f"cannot launch at this dtype: {e}")
    again = matmul(a, w, bias, epilogue="residual", residual=residual)
    assert torch.equal(first, again)
    # more shapes (the launcher sizes the workspace for the forced config, also where split_k_ok
    # would not try it: there it is only slower)
    run_case((1, 197, 768), 768, dtype, "residual", inplace=True)  # batch-1 out-proj, 3-D, in place
    run_case((8 * 197, 3072), 768, dtype, "residual")  # batch-8 FC2
    run_case((8, 3072), 768, dtype, "residual")  # the CLS-row FC2 of batch 8 (M4 picked split-K there)
    run_case((197, 3000), 520, dtype, "gelu")  # ragged K and N
    run_case((197, 576), 768, dtype, "none")  # 9 steps of 64: with SPLIT_K 4, an empty share


def test_split_k_setting(monkeypatch):
    from vitbench.errors import VitbenchError

    monkeypatch.delenv("VITBENCH_SPLIT_K", raising=False)
    assert mm.split_k_setting() is True  # on unless turned off
    for raw, expect in (("", True), ("0", False), ("1", True)):
        monkeypatch.setenv("VITBENCH_SPLIT_K", raw)
        assert mm.split_k_setting() is expect
    monkeypatch.setenv("VITBENCH_SPLIT_K", "yes")
    with pytest.raises(VitbenchError, match="VITBENCH_SPLIT_K"):
        mm.split_k_setting()


def test_split_k_configs_join_autotuning_unless_turned_off():
    # the GPU config lists, imported with the interpreter off, with VITBENCH_SPLIT_K 0, 1 and unset
    import os
    import subprocess
    import sys

    code = ("import vitbench, importlib\n"
            "M = importlib.import_module('vitbench.kernels.matmul')\n"
            "print(sum(c.kwargs['SPLIT_K'] > 1 for c in M._CONFIGS), len(M.SPLIT_K_CONFIGS))")
    for flag, joined in (("0", False), ("1", True), (None, True)):
        env = {k: v for k, v in os.environ.items() if k != "VITBENCH_SPLIT_K"}
        env.update({"TRITON_INTERPRET": "0", **({"VITBENCH_SPLIT_K": flag} if flag else {})})
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        in_tuning, total = map(int, out.stdout.split())
        assert total > 0 and in_tuning == (total if joined else 0)


def test_autotuner_workspace_covers_every_split_config_the_prune_keeps():
    # by default (VITBENCH_SPLIT_K unset or 1) SPLIT_K_CONFIGS are among the autotuned configs: the launcher's sizing
    # (not forced) must cover each one prune_by_smem keeps, at the ViT-B/16 batch-1 and -8 shapes
    half = torch.empty(1, dtype=torch.float16)
    configs = mm.GEMM_CONFIGS + mm.SPLIT_K_CONFIGS
    for M in (197, 8 * 197, 1, 8):
        for N, K in ((2304, 768), (768, 768), (3072, 768), (768, 3072)):
            ws, tiles = mm._split_sizes(M, N, K, configs, False)
            for c in mm.prune_by_smem(configs, {"a_ptr": half}, M=M, N=N, K=K):
                if c.kwargs["SPLIT_K"] > 1:
                    assert ws >= mm.split_ws_elems(c, M, N)
                    assert tiles >= -(-M // c.kwargs["BLOCK_M"]) * -(-N // c.kwargs["BLOCK_N"])


def test_prune_falls_back_to_a_config_that_does_not_split():
    half = torch.empty(1, dtype=torch.float16)
    plain = mm.matmul_config(64, 64, 64, 4, 4)
    split = mm.matmul_config(64, 64, 64, 4, 4, split=4)
    # neither fits a 1-row K=64 GEMM's rules for split-K; the fallback must not be the split one
    assert mm.prune_by_smem([split], {"a_ptr": half}, M=1, N=64, K=64) == [split]  # nothing else
    huge = mm.matmul_config(512, 512, 512, 4, 4)  # over shared memory
    assert mm.prune_by_smem([plain, huge, split], {"a_ptr": half}, M=1, N=64, K=64) == [plain]
    assert mm.prune_by_smem([huge, split], {"a_ptr": half}, M=1, N=64, K=64) == [huge]


def test_tune_apart_tunes_once_per_key_and_never_a_fixed_config(monkeypatch):
    # in-place GEMMs are autotuned by one out-of-place launch per key, before the in-place one
    monkeypatch.setattr(_common, "_TUNED_APART", set())
    tuned = []
    tuner = object()  # stands for triton's Autotuner
    _common.tune_apart(("k", 1), tuner, lambda: tuned.append(1))
    _common.tune_apart(("k", 1), tuner, lambda: tuned.append(2))
    _common.tune_apart(("k", 2), tuner, lambda: tuned.append(3))
    assert tuned == [1, 3]
    fixed = _common._FixedConfig(mm._heuristic(mm._matmul_kernel), mm.GEMM_CONFIGS[0])
    _common.tune_apart(("k", 3), fixed, lambda: tuned.append(4))
    assert tuned == [1, 3]


def test_scratch_like_is_compact_and_its_own():
    h = torch.zeros(3, 5, 8)
    view = h[:, :1]  # the CLS rows: [3, 1, 8], strides (40, 8, 1)
    s = _common.scratch_like(view)
    assert s.shape == view.shape and s.is_contiguous() and s.dtype == view.dtype
    assert s.untyped_storage().nbytes() == 3 * 8 * 4  # not the 3 x 5 x 8 span of the view
    s.fill_(1.0)
    assert h.abs().sum() == 0


def _probe_extra_split_configs() -> list:
    """tools/epilogue_probe.py's EXTRA_SPLIT_CONFIGS (split-K candidates for the next GPU probe)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "epilogue_probe.py"
    spec = importlib.util.spec_from_file_location("epilogue_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe.EXTRA_SPLIT_CONFIGS


@pytest.mark.parametrize("cfg", _probe_extra_split_configs(), ids=lambda c: "x".join(
    str(c.kwargs[k]) for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT_K")))
def test_probe_extra_split_configs_compute_the_same(force_config, cfg):
    """Forced through the launcher, as the probe launches them: right values (and counters left
    at 0) on ragged M and N, with K long enough that every one of the shares gets K steps."""
    force_config(cfg)
    assert mm.split_k_ok(cfg, 70, 90, 1024)
    run_case((70, 1024), 90, torch.float16, "residual")
