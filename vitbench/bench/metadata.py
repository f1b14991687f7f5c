"""Run metadata: run id, environment, git commit, resolved config + hash, measured peaks.

Written as ``<suite>-<run_id>.meta.json`` beside the CSV (keys: `schema.META_KEYS`), once at the
start of a run (``finished`` = null) and again at its end.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch

from vitbench.bench.schema import SCHEMA_VERSION
from vitbench.envinfo import environment, settings


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """Sortable and unique: UTC time + 4 random hex digits, e.g. 20261127T051500Z-3f2a."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def config_hash(config: Any) -> str:
    """sha256 of the resolved config as canonical JSON, first 12 hex digits."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def git_commit(cwd: Path | None = None) -> str | None:
    """The VITBENCH_GIT_COMMIT variable when set (a copied tree, e.g. on a lent GPU, may carry a
    stale .git: on 2026-11-27 one did, and runs recorded its old HEAD); else `git rev-parse HEAD`
    of the vitbench checkout (or `cwd`); else None."""
    if os.environ.get("VITBENCH_GIT_COMMIT"):
        return os.environ["VITBENCH_GIT_COMMIT"]
    where = cwd or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
            timeout=10, check=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build_meta(suite: str, run_id: str, config: dict, peaks: dict) -> dict[str, Any]:
    env = environment()
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "suite": suite,
        "created": utc_now(),
        "finished": None,
        "backend": env["device"]["backend"],
        "device": env["device"],
        "versions": env["versions"],
        "settings": env["settings"],
        "git_commit": git_commit(),
        "config": config,
        "config_hash": config_hash(config),
        "peaks": peaks,
        "sdpa_backends": sdpa_backends(env["device"]["backend"] == "cuda"),
        "note": env["note"],
    }


def sdpa_backends(on_gpu: bool) -> dict[str, bool] | None:
    """Which scaled_dot_product_attention backends torch may pick (None without a GPU)."""
    if not on_gpu:
        return None
    found = {}
    for name in ("flash", "mem_efficient", "math", "cudnn"):
        fn = getattr(torch.backends.cuda, f"{name}_sdp_enabled", None)
        if fn is not None:
            found[name] = bool(fn())
    return found


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(a: Any, b: Any) -> bool:
    """Equal as stored in the metadata (JSON: tuples become lists)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def resume_mismatch(meta: dict, config: dict, keys: Sequence[str]) -> str | None:
    """Why rows measured now would not be comparable with the run's (None: they are).

    Compares the git commit (when both are known), the VITBENCH_* settings and the config entries
    named in `keys`; "name.*" compares
    each entry of the dict config[name] that both runs have (entries only in one are other cases,
    e.g. a config file of another op)."""
    old_g, new_g = meta.get("git_commit"), git_commit()
    if old_g and new_g and old_g != new_g:
        return f"the run started at commit {old_g[:10]}, this is {new_g[:10]}"
    old_s, new_s = meta.get("settings") or {}, settings()
    for k in sorted(set(old_s) | set(new_s)):
        if old_s.get(k) != new_s.get(k):
            return (f"setting {k} was {old_s.get(k, 'unset')!r} when the run started, "
                    f"now {new_s.get(k, 'unset')!r}")
    old_c = meta.get("config") or {}
    for key in keys:
        if key.endswith(".*"):
            name = key[:-2]
            old, new = old_c.get(name) or {}, config.get(name) or {}
            for sub in sorted(set(old) & set(new)):
                if not _same(old[sub], new[sub]):
                    return f"config {name} entry {sub!r} differs from the run's"
        elif not _same(old_c.get(key), config.get(key)):
            return (f"config {key} was {_short(old_c.get(key))} when the run started, "
                    f"now {_short(config.get(key))}")
    return None


def write_meta(path: Path, meta: dict) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a JSON file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def autotune_picks() -> list[str]:
    """Each autotuned kernel's pick per key so far in this process (kernels._common.autotune_picks)."""
    from vitbench.kernels._common import autotune_picks as picks

    return picks()


def kernel_choices() -> list[str]:
    """The per-shape kernel choices made so far in this process (vitbench.kernels._dispatch, the
    VITBENCH_MATMUL=auto GEMM choice), as 'matmul a=(8, 197, 768) n=2304 bfloat16 none bias -> tma'."""
    from vitbench.kernels import _dispatch

    out = []
    for key, pick in _dispatch.choices().items():
        op, shape, _stride, n, dtype, epilogue, bias, inplace = key[:8]
        ln, stats = key[12:14] if len(key) >= 14 else (False, False)
        flags = (" bias" * bool(bias) + " in-place" * bool(inplace) + " ln-fold" * bool(ln)
                 + " row-stats" * bool(stats))
        out.append(f"{op} a={tuple(shape)} n={n} {str(dtype).removeprefix('torch.')} {epilogue}{flags}"
                   f" -> {pick}")
    return out

