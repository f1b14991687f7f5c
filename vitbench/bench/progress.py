"""A rich progress bar over the cases of a run (with ETA), or a silent stand-in."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, console: Console, task: int | None):
        self._p, self._console, self._task = progress, console, task

    def start(self, label: str) -> None:
        if self._p is not None:
            self._p.update(self._task, description=label[:60])

    def advance(self) -> None:
        if self._p is not None:
            self._p.advance(self._task)

    def warn(self, message: str) -> None:
        self._console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def case_progress(total: int, console: Console, enabled: bool = True) -> Iterator[_Bar]:
    """Yields an object with start(label), advance() and warn(message)."""
    if not enabled:
        yield _Bar(None, console, None)
        return
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, transient=False,
    )
    with progress:
        task = progress.add_task("starting", total=total)
        yield _Bar(progress, progress.console, task)
