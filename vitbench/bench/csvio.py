"""Row-by-row CSV writing (columns from `schema.COLUMNS`), raw-sample sidecar, resume support."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

from vitbench.bench.schema import COLUMNS, ROW_KEY
from vitbench.errors import VitbenchError


def run_paths(out_dir: Path, suite: str, run_id: str) -> tuple[Path, Path, Path]:
    """(csv, meta.json, samples.jsonl) of one run."""
    stem = f"{suite}-{run_id}"
    return out_dir / f"{stem}.csv", out_dir / f"{stem}.meta.json", out_dir / f"{stem}.samples.jsonl"


def latest_run(out_dir: Path, suite: str) -> tuple[str, Path] | None:
    """(run_id, csv path) of the newest ``<suite>-*.csv`` in out_dir (run ids sort by time)."""
    found = sorted(p for p in out_dir.glob(f"{suite}-*.csv") if p.is_file())
    if not found:
        return None
    path = found[-1]
    return path.stem[len(suite) + 1:], path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return str(value)


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """The identity of a row (ROW_KEY columns as CSV strings)."""
    return tuple(_cell(row.get(k)) for k in ROW_KEY)


def _repair_tail(path: Path) -> None:
    """Cut a last line left half-written by a killed process, so appending keeps the CSV valid."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of an existing vitbench CSV (as strings); VitbenchError if its columns differ."""
    _repair_tail(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and list(reader.fieldnames) != COLUMNS:
            raise VitbenchError(
                f"{path}: columns differ from this vitbench version's; cannot resume into it"
            )
        rows = list(reader)
    # A resumed run may hold a key twice (an errored row measured again): the last one wins.
    return list({row_key(r): r for r in rows}.values())


def retry_on_resume(row: dict[str, str]) -> bool:
    """Rows that errored (OOM, compile crash) are measured again by --resume; deliberate
    "skipped: <reason>" rows (the provider does not support the case) are not."""
    error = row.get("error") or ""
    return bool(error) and not error.startswith("skipped:")


_INTS = {"schema_version", "batch", "size", "n", "flops", "bytes"}
_FLOATS = {"median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "noise", "tflops", "gbps",
           "pct_of_peak", "items_per_s", "speedup_vs_baseline", "max_rel_err", "compile_s"}


def typed_row(row: dict[str, str]) -> dict[str, Any]:
    """A row read back from the CSV with the types the runner writes (numbers, bool, None)."""
    out: dict[str, Any] = {}
    for col in COLUMNS:
        v = row.get(col, "")
        if col == "ok":
            out[col] = v == "true"
        elif v == "":
            out[col] = None
        elif col in _INTS or col in _FLOATS:
            try:
                out[col] = int(v) if col in _INTS else float(v)
            except ValueError:
                out[col] = None
        else:
            out[col] = v
    return out


class RowWriter:
    """Appends rows to the CSV and samples to the sidecar, flushing after every write."""

    def __init__(self, csv_path: Path, samples_path: Path):
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        new = not csv_path.exists() or csv_path.stat().st_size == 0
        if not new:
            _repair_tail(csv_path)
        if samples_path.exists():
            _repair_tail(samples_path)
        self._csv = csv_path.open("a", newline="")
        self._samples = samples_path.open("a")
        if new:
            self._csv.write(",".join(COLUMNS) + "\n")
            self._csv.flush()

    def write(self, rows: Iterable[dict[str, Any]], samples: Iterable[list[float] | None]) -> None:
        """Write rows (one case) with one write call each, then their raw samples; flush both."""
        for row, smp in zip(rows, samples):
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow([_cell(row.get(c)) for c in COLUMNS])
            self._csv.write(buf.getvalue())
            if smp:
                rec = {"key": list(row_key(row)), "samples_ms": [round(x, 6) for x in smp]}
                self._samples.write(json.dumps(rec) + "\n")
        self._csv.flush()
        self._samples.flush()

    def close(self) -> None:
        self._csv.close()
        self._samples.close()
