"""Find, read and validate result runs: ``<suite>-<run_id>`` .csv, .meta.json, .samples.jsonl.

The layout and columns are declared in ``vitbench.bench.schema``; this module only reads them.
A bad file is a user mistake (VitbenchError naming the file); a missing or damaged side file
(metadata, samples) is not fatal: the run loads with a warning, so nothing measured is hidden.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vitbench.bench.schema import COLUMNS, ROW_KEY, SCHEMA_VERSION
from vitbench.errors import VitbenchError

DEFAULT_RESULTS = Path("results")

# Columns read as numbers (empty cell -> NaN); every other column is text ("" when empty).
NUMERIC: list[str] = [
    "schema_version", "batch", "size", "median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "n",
    "noise", "flops", "bytes", "tflops", "gbps", "pct_of_peak", "items_per_s",
    "speedup_vs_baseline", "max_rel_err", "compile_s",
]
NOISE_FLAG = 0.10  # rows noisier than this (IQR / median) are flagged
_TRUE = {"true", "1", "yes", "y", "t"}

Key = tuple[str, ...]


@dataclass
class Run:
    """One run of one suite, as read from disk."""

    csv_path: Path
    suite: str
    run_id: str
    rows: pd.DataFrame  # COLUMNS, typed; plus "key" (tuple of ROW_KEY values)
    meta: dict[str, Any]  # {} when the .meta.json file is missing or unreadable
    samples: dict[Key, list[float]]  # raw timings (ms) by row key; {} when none were saved
    warnings: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str:
        if self.meta.get("backend"):
            return str(self.meta["backend"])
        backends = set(self.rows["backend"]) - {""}
        return "interpreter" if "interpreter" in backends else (backends.pop() if backends else "")

    @property
    def interpreter(self) -> bool:
        return self.backend == "interpreter" or bool((self.rows["backend"] == "interpreter").any())

    @property
    def device(self) -> str:
        dev = self.meta.get("device")
        if isinstance(dev, dict) and dev.get("name"):
            return str(dev["name"])
        names = [d for d in self.rows["device"].unique() if d]
        return names[0] if names else "unknown device"

    @property
    def label(self) -> str:
        return f"{self.suite} · {self.device} · {self.run_id}"


def row_flags(row: dict[str, Any] | pd.Series) -> list[str]:
    """Why a row needs a reader's attention: failed check, error, or noisy timing."""
    flags = []
    if row["error"]:
        flags.append(f"error: {row['error']}")
    if not row["ok"] and not row["error"]:
        err = row["max_rel_err"]
        flags.append("ok=false" + ("" if pd.isna(err) else f" (max_rel_err {err:.2g})"))
    if not pd.isna(row["noise"]) and row["noise"] > NOISE_FLAG:
        flags.append(f"noise {row['noise']:.0%}")
    return flags


def row_key(values: dict[str, Any] | pd.Series) -> Key:
    """The ROW_KEY of one row as a tuple of strings (None/NaN -> "")."""
    return tuple(_text(values[c]) for c in ROW_KEY)


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _side_file(csv_path: Path, suffix: str) -> Path:
    return csv_path.with_name(csv_path.name[: -len(".csv")] + suffix)


def _csv_for(path: Path) -> Path:
    """Accept a run's CSV, or its .meta.json / .samples.jsonl, and return the CSV path."""
    for suffix in (".meta.json", ".samples.jsonl"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)] + ".csv")
    return path


def read_rows(csv_path: Path) -> pd.DataFrame:
    """Read and validate one result CSV (VitbenchError on an empty, foreign or old file)."""
    if csv_path.stat().st_size == 0:
        raise VitbenchError(f"{csv_path}: empty file (no header, no rows)")
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, on_bad_lines="error")
    except pd.errors.EmptyDataError:
        raise VitbenchError(f"{csv_path}: empty file (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0]
        raise VitbenchError(f"{csv_path}: not a readable CSV ({reason})") from None
    if "schema_version" in df.columns:
        found = sorted({v for v in df["schema_version"] if v.strip()} - {str(SCHEMA_VERSION)})
        if found:
            raise VitbenchError(
                f"{csv_path}: schema_version {', '.join(found)}, but this vitbench reads "
                f"schema_version {SCHEMA_VERSION}; use the vitbench version that wrote it")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise VitbenchError(f"{csv_path}: not a vitbench result CSV, missing columns: "
                            f"{', '.join(missing)}")
    if df.empty:
        raise VitbenchError(f"{csv_path}: has a header but no rows")
    df = df[COLUMNS].copy()
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col].str.strip(), errors="coerce")
    df["ok"] = df["ok"].str.strip().str.lower().isin(_TRUE)
    df["key"] = [row_key(r) for r in df[ROW_KEY].to_dict("records")]
    # A resumed run may hold a key twice: the last measurement wins.
    return df.drop_duplicates("key", keep="last").reset_index(drop=True)


def read_meta(csv_path: Path, warnings: list[str]) -> dict[str, Any]:
    path = _side_file(csv_path, ".meta.json")
    if not path.exists():
        warnings.append(f"{path.name}: missing, header shows only what the rows say")
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        warnings.append(f"{path.name}: unreadable ({exc}), ignored")
        return {}
    if not isinstance(meta, dict):
        warnings.append(f"{path.name}: not a JSON object, ignored")
        return {}
    version = meta.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise VitbenchError(f"{path}: schema_version {version}, but this vitbench reads "
                            f"schema_version {SCHEMA_VERSION}")
    return meta


def read_samples(csv_path: Path, warnings: list[str]) -> dict[Key, list[float]]:
    path = _side_file(csv_path, ".samples.jsonl")
    if not path.exists():
        warnings.append(f"{path.name}: missing, comparisons have no confidence intervals")
        return {}
    samples: dict[Key, list[float]] = {}
    bad = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            key = tuple(_text(v) for v in obj["key"])
            values = [float(v) for v in obj["samples_ms"]]
        except (ValueError, KeyError, TypeError):
            bad += 1  # e.g. the last line of a run that crashed mid-write
            continue
        if len(key) != len(ROW_KEY):
            bad += 1
            continue
        samples[key] = values
    if bad:
        warnings.append(f"{path.name}: {bad} unreadable line(s) skipped")
    return samples


def load_run(csv_path: Path) -> Run:
    """Read one run from its CSV path (or the path of one of its side files)."""
    csv_path = _csv_for(Path(csv_path))
    if not csv_path.is_file():
        raise VitbenchError(f"{csv_path}: no such result CSV")
    if not csv_path.name.endswith(".csv"):
        raise VitbenchError(f"{csv_path}: not a result CSV (expected <suite>-<run_id>.csv)")
    rows = read_rows(csv_path)
    warnings: list[str] = []
    meta = read_meta(csv_path, warnings)
    samples = read_samples(csv_path, warnings)
    stem = csv_path.name[: -len(".csv")]
    suite, _, run_id = stem.partition("-")
    suite = str(meta.get("suite") or (rows["suite"].iloc[0] if rows["suite"].iloc[0] else suite))
    run_id = str(meta.get("run_id") or (rows["run_id"].iloc[0] or run_id or stem))
    return Run(csv_path, suite, run_id, rows, meta, samples, warnings)


def _is_result_csv(path: Path) -> bool:
    """A run's CSV: it has its .meta.json beside it, or a header naming schema_version and run_id.
    Other CSVs in a results folder (`vitbench profile`'s per-kernel tables) are not runs."""
    if _side_file(path, ".meta.json").is_file():
        return True
    try:
        with path.open(newline="") as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return {"schema_version", "run_id"} <= {c.strip() for c in header.split(",")}


def _run_csvs(folder: Path) -> list[Path]:
    """Result CSVs under folder, recursively; hidden and ``_``-prefixed folders are skipped, and so
    are CSVs that are not runs (`_is_result_csv`)."""
    found = []
    for path in sorted(folder.rglob("*.csv")):
        parts = path.relative_to(folder).parts[:-1]
        if any(p.startswith((".", "_")) for p in parts):
            continue
        suite, dash, run_id = path.stem.partition("-")  # <suite>-<run_id>.csv
        if dash and run_id and suite.replace("_", "").isalnum() and suite.islower() and _is_result_csv(path):
            found.append(path)
    return found


def _meta_of(csv_path: Path) -> dict[str, Any]:
    """A run's metadata without reading its rows; {} when missing or unreadable."""
    try:
        meta = json.loads(_side_file(csv_path, ".meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _started(csv_path: Path, meta: dict[str, Any]) -> tuple[str, str]:
    """Sort key of a run: (meta "created", run id from the name)."""
    return str(meta.get("created") or ""), csv_path.stem.partition("-")[2]


def _ran_alongside(meta: dict[str, Any], latest: dict[str, Any]) -> bool:
    """Whether a run belongs with the latest one: the same commit and VITBENCH_* settings, and
    overlapping in time (one job split over GPUs, e.g. batches 1-32 and 128-256 in two processes)."""
    commit = meta.get("git_commit")
    if not commit or commit != latest.get("git_commit") or (meta.get("settings") or {}) != (
            latest.get("settings") or {}):
        return False
    start, end = str(meta.get("created") or ""), str(meta.get("finished") or meta.get("created") or "")
    l_start = str(latest.get("created") or "")
    l_end = str(latest.get("finished") or l_start)
    return bool(start and l_start) and start <= l_end and l_start <= end


def latest_runs(folder: Path) -> list[Run]:
    """The latest run of each suite found under folder (by start time, then run id), with the runs
    of that suite that ran alongside it (`_ran_alongside`); only those are read, so an old damaged
    run elsewhere in the folder does not get in the way."""
    csvs = _run_csvs(folder)
    if not csvs:
        raise VitbenchError(f"no results found in {folder}/ (no <suite>-<run_id>.csv files); "
                            "run `vitbench kernels` or `vitbench model` first")
    metas = {path: _meta_of(path) for path in csvs}
    suites: dict[str, list[Path]] = {}
    for path in csvs:
        suites.setdefault(path.stem.partition("-")[0], []).append(path)
    picked = []
    for suite in sorted(suites):
        latest = max(suites[suite], key=lambda p: _started(p, metas[p]))
        picked.append(latest)
        picked += sorted(p for p in suites[suite] if p != latest and _ran_alongside(metas[p], metas[latest]))
    return [load_run(path) for path in picked]


def find_runs(paths: list[Path] | None = None, default: Path = DEFAULT_RESULTS) -> list[Run]:
    """Runs named by paths (CSV files, or folders: the latest run per suite and the runs that ran
    alongside it); default: ``results/``."""
    if not paths and not Path(default).is_dir():
        raise VitbenchError(f"no results found: {default}/ does not exist; run `vitbench kernels` "
                            "or `vitbench model` first, or name result CSVs or folders")
    paths = list(paths or [default])
    runs: list[Run] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            runs.extend(latest_runs(path))
        elif _csv_for(path).is_file():
            runs.append(load_run(path))
        else:
            raise VitbenchError(f"{path}: no such result file or folder")
    unique = {r.csv_path.resolve(): r for r in runs}
    return list(unique.values())
