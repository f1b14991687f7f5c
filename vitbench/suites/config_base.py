"""What the kernel and model sweep files share: the strict pydantic base, the value names,
the timing budget, and loading (YAML safe loader only) with one-line errors that name the
file, the key path and the bad value (raised as VitbenchError)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vitbench.bench.case import Repeats
from vitbench.errors import VitbenchError

Dtype = Literal["fp32", "fp16", "bf16"]
# fp32 matrix products: exact, TF32 tensor cores, or a tensor-core split that keeps fp32 accuracy
# (the kernels' modes, vitbench.kernels._common.PRECISIONS)
Precision = Literal["ieee", "tf32", "tf32x3", "bf16x3", "bf16x6"]
TimerName = Literal["cold", "warm", "graph", "host"]
DTYPES: tuple[str, ...] = get_args(Dtype)
PRECISIONS: tuple[str, ...] = get_args(Precision)


class Strict(BaseModel):
    """A config section: unknown keys are mistakes (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid")


class RepeatsSpec(Strict):
    """Timing budget per (case, provider); these defaults are the kernel suite's."""

    budget_s: float = Field(default=0.25, ge=0)
    min_reps: int = Field(default=10, ge=1)
    max_reps: int = Field(default=1000, ge=1)
    warmup_s: float = Field(default=0.03, ge=0)

    @model_validator(mode="after")
    def _order(self) -> "RepeatsSpec":
        if self.max_reps < self.min_reps:
            raise ValueError(f"max_reps ({self.max_reps}) is below min_reps ({self.min_reps})")
        return self

    def to_repeats(self) -> Repeats:
        return Repeats(budget_s=self.budget_s, min_reps=self.min_reps, max_reps=self.max_reps,
                       warmup_s=self.warmup_s)


# Union-branch names pydantic puts in an error's key path; noise for a reader.
_BRANCH_NAMES = {"int", "str", "bool", "float"}
# Errors that only say "this union branch has another type": noise when another branch matched.
_BRANCH_MISMATCH = {"int_type", "int_parsing", "list_type", "string_type", "model_type",
                    "dict_type", "model_attributes_type", "bool_type", "float_type", "bool_parsing",
                    "float_parsing", "int_from_float"}


def _loc(loc: tuple, branches: set[str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in branches or "[" in str(part) or "(" in str(part):
            continue  # pydantic's union-branch / validator names are noise in a key path
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def explain(path: Path, exc: ValidationError, branches: tuple[str, ...] = ()) -> str:
    """One line: "<file>: <key path>: <message> (got <value>)", the most specific error only.
    `branches`: extra union-branch names (model classes) to leave out of key paths."""
    errs = exc.errors()
    real = [e for e in errs if e["type"] not in _BRANCH_MISMATCH] or errs
    e = max(real, key=lambda err: len(err["loc"]))  # the deepest is the most specific
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r:.60})"
    where = _loc(tuple(e["loc"]), _BRANCH_NAMES | set(branches))
    return f"{path}: {where}: {msg}{shown}"


def read_yaml(path: Path) -> dict:
    """The top-level mapping of a YAML file (yaml.safe_load only; an empty file -> {})."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise VitbenchError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise VitbenchError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VitbenchError(f"{path}: expected a mapping of keys at the top level, "
                            f"got {type(data).__name__}")
    return data


S = TypeVar("S", bound=BaseModel)


def load_config(path: str | Path, schema: type[S], branches: tuple[str, ...] = ()) -> S:
    """Read one sweep file and validate it against `schema`; any mistake -> VitbenchError."""
    path = Path(path)
    data = read_yaml(path)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise VitbenchError(explain(path, exc, branches)) from None
