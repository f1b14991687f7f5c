"""In-place residual GEMMs (out aliases residual) are autotuned out of place first (tune_apart).

On a GPU the launchers' kernels are triton Autotuners; here a recording stand-in takes their place:
any object that is not a _FixedConfig counts as an autotuner to the launchers. It runs the
interpreter's fixed config and notes which buffer each launch wrote.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from vitbench._backend import DEVICE, INTERPRETER
from vitbench.kernels import _common
from vitbench.numerics import rel_err
from tests.test_kernels_gemm import linear_ref, rand

# The launchers' wiring, with a stand-in for the autotuner; on a GPU the gpu tests cover the real
# one (test_gpu_matmul_inplace_residual_survives_autotune, test_gpu_inplace_residual_after_autotune).
pytestmark = pytest.mark.skipif(not INTERPRETER, reason="a CPU test of the launchers' wiring")

mm = importlib.import_module("vitbench.kernels.matmul")
tma_mod = importlib.import_module("vitbench.kernels.matmul_tma")


class RecordingTuner:
    """Stands for an Autotuner: launches `fixed`, noting the data pointer of argument `out_index`."""

    def __init__(self, fixed: _common._FixedConfig, out_index: int):
        self.fixed, self.out_index, self.writes = fixed, out_index, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.writes.append(args[self.out_index].data_ptr())
            return self.fixed[grid](*args, **kwargs)
        return launch


@pytest.fixture(autouse=True)
def fresh_keys(monkeypatch):
    monkeypatch.setattr(_common, "_TUNED_APART", set())


def _pointer_tuner(monkeypatch):
    fixed = _common._FixedConfig(mm._heuristic(mm._matmul_kernel), mm._CONFIGS[0])
    tuner = RecordingTuner(fixed, out_index=4)  # (a, w, bias, res, out, ...)
    monkeypatch.setattr(mm, "_matmul", tuner)
    monkeypatch.setattr(mm, "MODE", "pointer")
    return tuner


def _tma_tuner(monkeypatch):
    fixed = _common._FixedConfig(tma_mod._matmul_tma_kernel, tma_mod.TMA_CONFIGS[0])
    tuner = RecordingTuner(fixed, out_index=4)  # (a2, w2, bias, r2, out, ...)
    monkeypatch.setattr(tma_mod, "_matmul_tma", tuner)
    return tuner


@pytest.mark.parametrize("kernel", ["pointer", "tma"])
def test_in_place_call_is_tuned_on_scratch_once_then_runs_in_place(monkeypatch, kernel):
    tuner = (_pointer_tuner if kernel == "pointer" else _tma_tuner)(monkeypatch)
    run = mm.matmul if kernel == "pointer" else tma_mod.matmul_tma
    h, w, b = rand(2, 9, 32, dtype=torch.float16), rand(16, 32, dtype=torch.float16), rand(16, dtype=torch.float16)
    x = rand(2, 9, 16, dtype=torch.float16)
    x0 = x.clone()
    run(h, w, b, epilogue="residual", residual=x, out=x)
    assert len(tuner.writes) == 2
    assert tuner.writes[0] != x.data_ptr()  # the first launch (where autotuning happens): scratch
    assert tuner.writes[1] == x.data_ptr()  # then the real one, in place
    assert rel_err(x, linear_ref(h, w, b, "residual", x0)) < 1e-2  # residual added exactly once
    run(h, w, b, epilogue="residual", residual=x, out=x)  # same shape again: no scratch launch
    assert len(tuner.writes) == 3 and tuner.writes[2] == x.data_ptr()


@pytest.mark.parametrize("kernel", ["pointer", "tma"])
def test_out_of_place_residual_call_launches_once(monkeypatch, kernel):
    tuner = (_pointer_tuner if kernel == "pointer" else _tma_tuner)(monkeypatch)
    run = mm.matmul if kernel == "pointer" else tma_mod.matmul_tma
    h, w = rand(9, 32, dtype=torch.float16), rand(16, 32, dtype=torch.float16)
    r = rand(9, 16, dtype=torch.float16)
    out = torch.empty(9, 16, dtype=torch.float16, device=DEVICE)
    run(h, w, None, epilogue="residual", residual=r, out=out)
    assert tuner.writes == [out.data_ptr()]
    assert rel_err(out, linear_ref(h, w, None, "residual", r)) < 1e-2
