"""On/off settings read from the environment (VITBENCH_PDL, VITBENCH_TUNE_COLD, VITBENCH_SPLIT_K)."""

from __future__ import annotations

import os

from vitbench.errors import VitbenchError


def env_flag(name: str, meaning: str) -> bool:
    """`name` as a bool: unset, "" or "0" -> False; "1" -> True; else VitbenchError naming it and
    saying what 1 means (`meaning`)."""
    raw = os.environ.get(name, "").strip()
    if raw in ("", "0"):
        return False
    if raw == "1":
        return True
    raise VitbenchError(f"{name}={raw!r}: use 1 ({meaning}) or 0 / unset")
