"""What every suite shares after its config is read: where configs and results live, the plan
(cases + providers + timer and its hold + resolved config + notes) and running it through the
engine.

  plan = plan_kernels(...) or plan_model(...)   # a SuitePlan
  run_plan(plan, out_dir=None)                  # notes, summary line, then rows in the CSV
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vitbench
from vitbench._backend import HAS_CUDA, INTERPRETER
from vitbench.bench.case import Case, Provider
from vitbench.bench.runner import RunResult, run_suite
from vitbench.envinfo import device_info

ON_GPU = HAS_CUDA and not INTERPRETER


def find_config(relative: str) -> Path | None:
    """`configs/<relative>` beside the package (a source checkout), else in the current folder."""
    for base in (Path(vitbench.__file__).resolve().parent.parent, Path.cwd()):
        if (base / "configs" / relative).exists():
            return base / "configs" / relative
    return None


def device_slug(name: str | None = None) -> str:
    """Folder name for a device: "NVIDIA H100 80GB HBM3" -> "h100"; no GPU -> "interpreter"."""
    if not ON_GPU and name is None:
        return "interpreter"
    name = (name or device_info().name).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", name)
             if w and w not in ("nvidia", "geforce", "tesla") and not re.fullmatch(
                 r"\d+gb|hbm\d*e?|pcie|sxm\d*|nvl|gddr\d*x?", w)]
    return "-".join(words) or "gpu"


def default_out_dir() -> Path:
    return Path("results") / device_slug()


@dataclass
class SuitePlan:
    """What a suite will run; `config` is the resolved config (metadata and its hash)."""

    suite: str
    cases: list[Case]
    providers: list[Provider]
    timer: str
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    # device timers sleep the GPU while the host enqueues each chunk (vitbench.bench.timers):
    # on for kernels (device time only), off for end-to-end work whose launch time counts
    hold: bool = False

    def summary(self) -> str | None:
        """One line printed before the run (None: nothing)."""
        return None


def run_plan(plan: SuitePlan, *, out_dir: str | Path | None = None, resume: bool = False,
             progress: bool = True, console=None) -> RunResult:
    """Print the plan's notes (and summary), then run it through the shared engine; rows go to
    <out_dir>/<suite>-<run_id>.csv (default out_dir: results/<device>)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    for note in plan.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    summary = plan.summary()
    if summary:
        console.print(summary, soft_wrap=True)
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    return run_suite(plan.suite, plan.cases, plan.providers, out_dir=out, timer=plan.timer,
                     hold=plan.hold, resume=resume, config=plan.config, progress=progress,
                     console=console)
