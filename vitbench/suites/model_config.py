"""The model sweep file (``configs/model.yaml``): YAML (safe loader) checked by a pydantic schema.

    description: ViT-B/16 inference, every provider
    model: vit-base-patch16-224     # a name from vitbench.model.configs.NAMED
    weights: random                 # random | a save_pretrained directory | a hub id
    batches: [1, 8, 32, 128, 256]
    dtypes: [bf16]
    precisions: [ieee]              # fp32 rows: ieee, tf32, bf16x6, tf32x3, bf16x3
    providers: [triton, hf-eager, hf-sdpa, torch-compile]
    compile_mode: reduce-overhead   # torch.compile mode of the torch-compile provider
    graphs: true                    # CUDA graphs for the triton provider (GPU only)
    cls_only: true                  # triton: last layer past attention on the CLS row only
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
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, Field

from vitbench.model.configs import NAMED
from vitbench.suites.config_base import (
    Dtype, Precision, RepeatsSpec, Strict, TimerName, load_config,
)

ProviderName = Literal["triton", "hf-eager", "hf-sdpa", "torch-compile"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
PROVIDERS: tuple[str, ...] = get_args(ProviderName)
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)


def _known_model(v: str) -> str:
    if v not in NAMED:
        raise ValueError(f"unknown model {v!r}; choose from {', '.join(NAMED)}")
    return v


def _positive(v: list[int]) -> list[int]:
    for b in v:
        if isinstance(b, bool) or b <= 0:
            raise ValueError(f"batch size {b!r} must be a positive integer")
    return v


ModelName = Annotated[str, AfterValidator(_known_model)]
Batches = Annotated[list[int], AfterValidator(_positive), Field(min_length=1)]


class Overrides(Strict):
    """Keys the `interpreter:` section may replace."""

    model: ModelName | None = None
    weights: str | None = None
    batches: Batches | None = None
    dtypes: list[Dtype] | None = Field(default=None, min_length=1)
    precisions: list[Precision] | None = Field(default=None, min_length=1)
    providers: list[ProviderName] | None = Field(default=None, min_length=1)


class ModelRepeatsSpec(RepeatsSpec):
    """A forward pass takes longer than one kernel: a larger budget, fewer repetitions."""

    budget_s: float = Field(default=1.0, ge=0)
    max_reps: int = Field(default=300, ge=1)
    warmup_s: float = Field(default=0.1, ge=0)


class ModelConfig(Strict):
    description: str = ""
    model: ModelName = "vit-base-patch16-224"
    weights: str = "random"
    batches: Batches = Field(default_factory=lambda: [1, 8, 32])
    dtypes: list[Dtype] = Field(default_factory=lambda: ["bf16"], min_length=1)
    precisions: list[Precision] = Field(default_factory=lambda: ["ieee"], min_length=1)
    providers: list[ProviderName] = Field(default_factory=lambda: list(PROVIDERS), min_length=1)
    compile_mode: CompileMode = "reduce-overhead"
    graphs: bool = True
    cls_only: bool = True  # logits only: the triton provider's last layer skips non-CLS rows
    timer: TimerName = "cold"
    repeats: ModelRepeatsSpec = Field(default_factory=ModelRepeatsSpec)
    interpreter: Overrides = Field(default_factory=lambda: Overrides(
        model="vit-tiny-test", batches=[1, 2], dtypes=["fp32"],
        providers=["triton", "hf-eager", "hf-sdpa"]))

    def for_interpreter(self) -> "ModelConfig":
        """This config with the `interpreter:` overrides applied."""
        upd = {k: v for k, v in self.interpreter.model_dump().items() if v is not None}
        return self.model_copy(update=upd)


def load_model_config(path: str | Path | None) -> ModelConfig:
    """Read and validate a model sweep file (None -> the built-in defaults)."""
    return ModelConfig() if path is None else load_config(path, ModelConfig)
