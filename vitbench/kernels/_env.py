"""On/off settings read from the environment (VITBENCH_PDL, VITBENCH_TUNE_COLD, VITBENCH_SPLIT_K,
VITBENCH_ATTN_TAIL)."""

from __future__ import annotations

import os

from vitbench.errors import VitbenchError


def env_flag(name: str, meaning: str, default: bool = False) -> bool:
    """`name` as a bool: "0" -> False; "1" -> True; unset or "" -> `default`; else VitbenchError
    naming it and saying what 1 means (`meaning`)."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    if raw in ("0", "1"):
        return raw == "1"
    unset = "on" if default else "off"
    raise VitbenchError(f"{name}={raw!r}: use 1 ({meaning}) or 0 (off); unset means {unset}")
