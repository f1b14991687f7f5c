"""Programmatic dependent launch (PDL), opt-in: VITBENCH_PDL=1 (Hopper and newer, CUDA only).

Normally a kernel starts only after the previous kernel in the stream has finished, so each of
the ~90 launches of a ViT forward pays the gap between one kernel's last block and the next
one's first (launch, block scheduling, prologue). With PDL every vitbench kernel is launched with
CUDA's programmatic-stream-serialization attribute and begins with `pdl_start(PDL)`:

- `griddepcontrol.wait` (triton's `gdc_wait`): block until the previous kernel has completed and
  its memory writes are visible. Every input a kernel reads was written by an earlier kernel, and
  that kernel completed before the previous one got past its own wait, so waiting for the previous
  kernel is enough (a kernel that is not ours, such as a torch copy, never allows an early launch);
- then `griddepcontrol.launch_dependents`: the next kernel may launch now, and run up to its own
  wait while this one computes.

Correctness does not depend on where the launch_dependents is placed; only the overlap does.
Inside a CUDA graph capture the dependency becomes a programmatic edge (CUDA >= 12.3).
Not measured yet (docs/performance.md, section 4); off by default. Hopper and newer only (checked).
With PDL on, `vitbench profile`'s per-kernel times include each kernel's wait for its predecessor.

    PDL                    # bool: VITBENCH_PDL=1 and not the interpreter
    kernel[grid](..., **launch_opts())   # PDL=... constexpr, and launch_pdl=True when on
    pdl_start(PDL)         # first statement of each kernel (no-op when PDL is False)
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from vitbench._backend import INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels._env import env_flag

PDL_ENV = "VITBENCH_PDL"


def pdl_setting() -> bool:
    """VITBENCH_PDL as a bool: unset, "" or "0" -> False; "1" -> True; else VitbenchError."""
    return env_flag(PDL_ENV, "programmatic dependent launch")


try:
    PDL: bool = pdl_setting() and not INTERPRETER
except VitbenchError:  # reported by the CLI at start (vitbench.cli), here: off
    PDL = False


@functools.lru_cache(maxsize=None)
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def check_device() -> None:
    """VitbenchError when PDL is on and the current GPU is older than Hopper (ptxas rejects
    griddepcontrol below sm_90: the error would surface from inside autotuning otherwise)."""
    if PDL and torch.cuda.is_available():
        index = torch.cuda.current_device()
        if _capability(index) < (9, 0):
            major, minor = _capability(index)
            raise VitbenchError(f"{PDL_ENV}=1 needs compute capability 9.0 or newer (Hopper); "
                                f"this GPU has {major}.{minor}: unset {PDL_ENV}")


def launch_opts() -> dict:
    """Extra launch arguments for every vitbench kernel: the PDL constexpr, and CUDA's PDL
    launch attribute when it is on."""
    if not PDL:
        return {"PDL": False}
    check_device()
    return {"PDL": True, "launch_pdl": True}


@triton.jit
def pdl_start(PDL: tl.constexpr):
    # See the module docstring: wait for the previous kernel, then let the next one launch.
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
