"""What the engine measures: `Case` (one thing at one shape/dtype), `Provider` (one way to run
it) and `Repeats` (the timing budget). Documented in `vitbench.bench.runner`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from vitbench._backend import HAS_CUDA, INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.numerics import tolerance as default_tolerance

_ON_GPU = HAS_CUDA and not INTERPRETER
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    """"fp32" | "fp16" | "bf16" -> torch dtype (VitbenchError for anything else)."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise VitbenchError(f"unknown dtype {name!r}; choose from {', '.join(_DTYPES)}") from None


@dataclass
class Case:
    suite: str
    op: str
    case: str
    dtype: str
    shape: dict[str, Any]
    inputs: Callable[[], Any]
    reference: Callable[[Any], Any]
    precision: str = ""
    batch: int | None = None
    size: int | None = None
    flops: float = 0.0
    bytes: float = 0.0
    items: int | None = None
    tolerance: float | None = None
    compare: Callable[[Any, Any], float] | None = None
    repeats: "Repeats | None" = None  # this case's timing budget instead of the run's

    @property
    def shape_str(self) -> str:
        """Canonical "K=V;K=V" form of the shape parameters (insertion order)."""
        return ";".join(f"{k}={v}" for k, v in self.shape.items())

    def limit(self) -> float:
        if self.tolerance is not None:
            return self.tolerance
        return default_tolerance(torch_dtype(self.dtype), self.precision or "ieee")


@dataclass
class Provider:
    name: str
    prepare: Callable[[Case, Any], Callable[[], Any]]
    is_baseline: bool = False
    supports: Callable[[Case], str | None] | None = None


@dataclass(frozen=True)
class Repeats:
    """How long to time each case: a wall-time budget shared by its providers, clamped counts."""

    budget_s: float = 0.25  # timed wall time per case, all providers together
    min_reps: int = 10
    max_reps: int = 1000
    warmup_s: float = 0.03  # per provider, after the first (compiling) call
    min_warmup: int = 2

    @classmethod
    def for_backend(cls) -> "Repeats":
        """GPU defaults, or a tiny budget in the interpreter (timings there mean little)."""
        return cls() if _ON_GPU else cls(budget_s=0.0, min_reps=2, max_reps=2, warmup_s=0.0,
                                         min_warmup=0)

