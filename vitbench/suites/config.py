"""Sweep configs: YAML (safe loader only) validated by a pydantic schema, expanded into shapes.

A kernel sweep file (``configs/kernels/<name>.yaml``)::

    description: LayerNorm rows sweep (original vit.triton: B=1, D=768)
    dtypes: [fp32, bf16]            # default for every case set
    precisions: [ieee]              # fp32 rows of ops with matrix products: ieee, tf32, bf16x6, tf32x3, bf16x3
    providers: [triton, torch, torch-compile]
    timer: cold                     # cold | warm | graph | host (interpreter: always host)
    repeats: {budget_s: 0.25, min_reps: 10, max_reps: 1000, warmup_s: 0.03}
    cases:                          # case sets; each expands to the product of its shape values
      - op: layernorm
        label: rows                 # the CSV's `case` column
        shape:
          T: {from: 256, to: 6144, step: 256}   # inclusive range (or `mul: 2` for a geometric one)
          D: 768                    # one value, or a list [512, 768]
          B: T                      # a string ties a parameter to another one's value
        options: {eps: 1.0e-5}      # op options (see vitbench.suites.kernel_specs)
        dtypes: [bf16]              # optional per-set override (also `precisions`)
        batch: true                 # put B in the CSV's `batch` column (the vit set)
    quick:                          # the `--quick` subset: same form, a few small shapes
      - ...

Every error names the file, the key path and the bad value (raised as VitbenchError).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal, Union, get_args

from pydantic import Field, StrictInt, StrictStr, field_validator, model_validator

from vitbench.errors import VitbenchError
from vitbench.suites.config_base import (
    Dtype, Precision, RepeatsSpec, Strict, TimerName, load_config,
)
from vitbench.suites.kernel_specs import OP_SPECS, complete_shape

ProviderName = Literal["triton", "torch", "torch-compile"]
PROVIDERS: tuple[str, ...] = get_args(ProviderName)
MAX_CASES_PER_SET = 10_000


class RangeSpec(Strict):
    """Inclusive range: from, from+step, ... <= to; or from, from*mul, ... <= to."""

    start: int = Field(alias="from", gt=0)
    to: int = Field(gt=0)
    step: int | None = Field(default=None, gt=0)
    mul: int | None = Field(default=None, gt=1)

    @model_validator(mode="after")
    def _one_rule(self) -> "RangeSpec":
        if (self.step is None) == (self.mul is None):
            raise ValueError("give exactly one of `step` or `mul`")
        if self.to < self.start:
            raise ValueError(f"`to` ({self.to}) is below `from` ({self.start})")
        return self

    def values(self) -> list[int]:
        out, v = [], self.start
        while v <= self.to:
            out.append(v)
            v = v + self.step if self.step else v * self.mul
        return out


ShapeValue = Union[StrictInt, list[StrictInt], RangeSpec, StrictStr]


class CaseSet(Strict):
    op: str
    label: str = Field(min_length=1)
    shape: dict[str, ShapeValue]
    options: dict[str, Union[bool, int, float, str]] = Field(default_factory=dict)
    dtypes: list[Dtype] | None = None
    precisions: list[Precision] | None = None
    batch: bool = False

    @field_validator("op")
    @classmethod
    def _known_op(cls, v: str) -> str:
        if v not in OP_SPECS:
            raise ValueError(f"unknown op {v!r}; choose from {', '.join(OP_SPECS)}")
        return v

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: dict[str, Any]) -> dict[str, Any]:
        for k, v in shape.items():
            vals = v if isinstance(v, list) else [v] if isinstance(v, int) else []
            if isinstance(v, list) and not v:
                raise ValueError(f"{k}: empty list")
            for x in vals:
                if isinstance(x, bool) or x <= 0:
                    raise ValueError(f"{k}: size {x!r} must be a positive integer")
        return shape

    @model_validator(mode="after")
    def _fits_op(self) -> "CaseSet":
        spec = OP_SPECS[self.op]
        for k, v in self.shape.items():
            if k not in spec.params:
                raise ValueError(f"shape.{k}: unknown parameter for op {self.op} "
                                 f"(takes {', '.join(spec.params)})")
            if isinstance(v, str) and (v not in self.shape or isinstance(self.shape[v], str)):
                raise ValueError(f"shape.{k}: {v!r} must name another, non-tied parameter")
        missing = [k for k in spec.required if k not in self.shape]
        if missing:
            raise ValueError(f"shape: op {self.op} needs {', '.join(missing)}")
        problem = spec.check_options(self.options)
        if problem:
            raise ValueError(f"options: {problem}")
        return self

    def shapes(self) -> list[dict[str, int]]:
        """The product of the untied parameters' values, ties copied, optional ones filled."""
        free = {k: (v.values() if isinstance(v, RangeSpec) else v if isinstance(v, list) else [v])
                for k, v in self.shape.items() if not isinstance(v, str)}
        n = 1
        for vals in free.values():
            n *= len(vals)
        if n > MAX_CASES_PER_SET:
            raise ValueError(f"expands to {n} shapes (more than {MAX_CASES_PER_SET})")
        out = []
        for combo in itertools.product(*free.values()):
            vals = dict(zip(free, combo))
            shape = {k: vals[v] if isinstance(v, str) else vals[k] for k, v in self.shape.items()}
            out.append(complete_shape(self.op, shape))
        return out


class KernelConfig(Strict):
    description: str = ""
    dtypes: list[Dtype] = Field(default_factory=lambda: ["fp32"], min_length=1)
    precisions: list[Precision] = Field(default_factory=lambda: ["ieee"], min_length=1)
    providers: list[ProviderName] = Field(default_factory=lambda: list(PROVIDERS), min_length=1)
    timer: TimerName = "cold"
    repeats: RepeatsSpec = Field(default_factory=RepeatsSpec)
    cases: list[CaseSet] = Field(min_length=1)
    quick: list[CaseSet] = Field(default_factory=list)


def load_kernel_config(path: str | Path) -> KernelConfig:
    """Read and validate one kernel sweep file; every mistake -> one-line VitbenchError."""
    path = Path(path)
    cfg = load_config(path, KernelConfig, branches=("RangeSpec",))
    for name in ("cases", "quick"):
        for i, cs in enumerate(getattr(cfg, name)):
            _check_shapes(path, f"{name}[{i}]", cs)
    return cfg


def _check_shapes(path: Path, where: str, cs: CaseSet) -> None:
    try:
        shapes = cs.shapes()
    except ValueError as exc:
        raise VitbenchError(f"{path}: {where}.shape: {exc}") from None
    check = OP_SPECS[cs.op].check_shape
    for s in shapes:
        problem = check(s)
        if problem:
            raise VitbenchError(f"{path}: {where}.shape: {problem} (shape {s})")
