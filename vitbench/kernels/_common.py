"""Shared launcher helpers: input validation and autotuning that also works in the interpreter."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import triton

from vitbench._backend import DEVICE, INTERPRETER
from vitbench.errors import VitbenchError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPE_NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NAME_OF_DTYPE = {v: k for k, v in DTYPE_NAMES.items()}
PRECISIONS = ("ieee", "tf32")


def dtype_from_name(name: str) -> torch.dtype:
    try:
        return DTYPE_NAMES[name]
    except KeyError:
        raise VitbenchError(f"unknown dtype {name!r}; choose from {', '.join(DTYPE_NAMES)}") from None


def check_tensor(
    name: str,
    t: object,
    *,
    ndim: int | Iterable[int] | None = None,
    dtypes: Sequence[torch.dtype] = FLOAT_DTYPES,
    contiguous_last: bool = True,
) -> torch.Tensor:
    """Validate one launcher argument; raise VitbenchError naming it when it is unusable."""
    if not isinstance(t, torch.Tensor):
        raise VitbenchError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != DEVICE.type:
        where = "CPU (Triton interpreter)" if INTERPRETER else "a CUDA device"
        raise VitbenchError(f"{name} is on {t.device}, but kernels here run on {where}")
    if t.dtype not in dtypes:
        allowed = ", ".join(NAME_OF_DTYPE.get(d, str(d)) for d in dtypes)
        raise VitbenchError(f"{name} has dtype {t.dtype}; expected one of {allowed}")
    if ndim is not None:
        allowed_nd = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed_nd:
            raise VitbenchError(
                f"{name} must have {' or '.join(map(str, allowed_nd))} dims, got shape {tuple(t.shape)}"
            )
    if contiguous_last and t.dim() > 0 and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise VitbenchError(f"{name} must be contiguous in its last dim (strides {t.stride()})")
    return t


def check_same_dtype(**tensors: torch.Tensor | None) -> torch.dtype:
    present = {k: v for k, v in tensors.items() if v is not None}
    dtypes = {v.dtype for v in present.values()}
    if len(dtypes) > 1:
        desc = ", ".join(f"{k}={v.dtype}" for k, v in present.items())
        raise VitbenchError(f"dtype mismatch: {desc}")
    return dtypes.pop()


def check_precision(precision: str, dtype: torch.dtype) -> str:
    """fp32 dots are exact ("ieee") unless the caller explicitly asks for "tf32"."""
    if precision not in PRECISIONS:
        raise VitbenchError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision if dtype == torch.float32 else "ieee"


def autotune(configs: list[triton.Config], key: list[str], **kwargs) -> Callable:
    """`triton.autotune` on a GPU; under the interpreter, the first config, fixed.

    `@triton.autotune` cannot run in the interpreter without a GPU driver, so there the
    returned kernel binds the first config's meta-parameters and launches directly.
    """

    def decorate(fn):
        if not INTERPRETER:
            return triton.autotune(configs=configs, key=key, **kwargs)(fn)
        return _FixedConfig(fn, configs[0])

    return decorate


class _FixedConfig:
    """Launch `fn` with one config's meta-parameters (interpreter stand-in for autotune)."""

    def __init__(self, fn, config: triton.Config):
        self.fn, self.config = fn, config

    def __getitem__(self, grid):
        meta = dict(self.config.kwargs)

        def launch(*args, **kwargs):
            g = grid({**kwargs, **meta}) if callable(grid) else grid
            return self.fn[g](*args, **kwargs, **meta)

        return launch
