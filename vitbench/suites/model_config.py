"""The model sweep file (``configs/model.yaml``): YAML (safe loader) checked by a pydantic schema.

    description: ViT-B/16 inference, every provider
    model: vit-base-patch16-224     # a name from vitbench.model.configs.NAMED
    weights: random                 # random | a save_pretrained directory | a hub id
    batches: [1, 8, 32, 128, 256]
    dtypes: [bf16]
    precisions: [ieee]              # fp32 rows: ieee and/or tf32
    providers: [triton, hf-eager, hf-sdpa, torch-compile]
    compile_mode: reduce-overhead   # torch.compile mode of the torch-compile provider
    graphs: true                    # CUDA graphs for the triton provider (GPU only)
    timer: cold                     # cold | warm | graph | host
    repeats: {budget_s: 1.0, min_reps: 10, max_reps: 300, warmup_s: 0.1}
    interpreter:                    # overrides used without a GPU (Triton interpreter)
      model: vit-tiny-test
      batches: [1, 2]
      dtypes: [fp32]
      providers: [triton, hf-eager, hf-sdpa]

Every mistake -> one-line VitbenchError naming the file, the key and the bad value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vitbench.errors import VitbenchError
from vitbench.model.configs import NAMED

PROVIDERS = ("triton", "hf-eager", "hf-sdpa", "torch-compile")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

Dtype = Literal["fp32", "fp16", "bf16"]
ProviderName = Literal["triton", "hf-eager", "hf-sdpa", "torch-compile"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _known_model(v: str | None) -> str | None:
    if v is not None and v not in NAMED:
        raise ValueError(f"unknown model {v!r}; choose from {', '.join(NAMED)}")
    return v


def _positive(v: list[int] | None) -> list[int] | None:
    for b in v or []:
        if isinstance(b, bool) or b <= 0:
            raise ValueError(f"batch size {b!r} must be a positive integer")
    return v


class Overrides(_Strict):
    """Keys the `interpreter:` section may replace."""

    model: str | None = None
    weights: str | None = None
    batches: list[int] | None = Field(default=None, min_length=1)
    dtypes: list[Dtype] | None = Field(default=None, min_length=1)
    precisions: list[Literal["ieee", "tf32"]] | None = Field(default=None, min_length=1)
    providers: list[ProviderName] | None = Field(default=None, min_length=1)

    @field_validator("model")
    @classmethod
    def _model(cls, v):
        return _known_model(v)

    @field_validator("batches")
    @classmethod
    def _batches(cls, v):
        return _positive(v)


class RepeatsSpec(_Strict):
    budget_s: float = Field(default=1.0, ge=0)
    min_reps: int = Field(default=10, ge=1)
    max_reps: int = Field(default=300, ge=1)
    warmup_s: float = Field(default=0.1, ge=0)


class ModelConfig(_Strict):
    description: str = ""
    model: str = "vit-base-patch16-224"
    weights: str = "random"
    batches: list[int] = Field(default_factory=lambda: [1, 8, 32], min_length=1)
    dtypes: list[Dtype] = Field(default_factory=lambda: ["bf16"], min_length=1)
    precisions: list[Literal["ieee", "tf32"]] = Field(default_factory=lambda: ["ieee"], min_length=1)
    providers: list[ProviderName] = Field(default_factory=lambda: list(PROVIDERS), min_length=1)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = "reduce-overhead"
    graphs: bool = True
    timer: Literal["cold", "warm", "graph", "host"] = "cold"
    repeats: RepeatsSpec = Field(default_factory=RepeatsSpec)
    interpreter: Overrides = Field(default_factory=lambda: Overrides(
        model="vit-tiny-test", batches=[1, 2], dtypes=["fp32"],
        providers=["triton", "hf-eager", "hf-sdpa"]))

    @field_validator("model")
    @classmethod
    def _model(cls, v):
        return _known_model(v)

    @field_validator("batches")
    @classmethod
    def _batches(cls, v):
        return _positive(v)

    def for_interpreter(self) -> "ModelConfig":
        """This config with the `interpreter:` overrides applied."""
        upd = {k: v for k, v in self.interpreter.model_dump().items() if v is not None}
        return self.model_copy(update=upd)


def _where(loc: tuple) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")


def load_model_config(path: str | Path | None) -> ModelConfig:
    """Read and validate a model sweep file (None -> the built-in defaults)."""
    if path is None:
        return ModelConfig()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise VitbenchError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise VitbenchError(f"{path}: malformed YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise VitbenchError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        got = e.get("input")
        shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        msg = e["msg"].removeprefix("Value error, ")
        raise VitbenchError(f"{path}: {_where(tuple(e['loc'])) or '(top level)'}: {msg}{shown}") from None


def parse_batches(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; empty items, non-integers and sizes < 1 -> VitbenchError."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise VitbenchError(f"--batch {text!r}: empty item; give positive integers like 1,8,32")
        try:
            b = int(item)
        except ValueError:
            raise VitbenchError(f"--batch {text!r}: {item!r} is not an integer") from None
        if b <= 0:
            raise VitbenchError(f"--batch {text!r}: batch size {b} must be at least 1")
        out.append(b)
    return list(dict.fromkeys(out))


def parse_list(text: str, what: str, allowed: tuple[str, ...]) -> list[str]:
    """'a,b' -> ['a', 'b'], each in `allowed` (VitbenchError naming the option otherwise)."""
    items = [v.strip() for v in text.split(",")]
    if not any(items):
        raise VitbenchError(f"--{what} is empty; choose from {', '.join(allowed)}")
    for v in items:
        if v not in allowed:
            raise VitbenchError(f"--{what}: unknown value {v!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))
