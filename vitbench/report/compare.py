"""Compare two runs: rows matched by ROW_KEY, ratio of medians NEW/BASE with a 95% bootstrap CI.

ratio > 1 means NEW is slower. Per row: resample BASE's and NEW's raw samples (with replacement,
fixed seed per row so results do not depend on row order), take the ratio of the two medians;
the CI is the 2.5–97.5 percentile of the resampled ratios and the change is significant when the
CI excludes 1. Per op/model: geometric mean of the row ratios, its CI from the same resamples
(mean of the per-row log-ratios, resample by resample).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vitbench.bench.schema import ROW_KEY
from vitbench.errors import VitbenchError
from vitbench.report.load import Key, Run

RESAMPLES = 2000
SEED = 0
_CHUNK = 4_000_000  # resampled values held at once (~32 MB of float64)


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05 (a slowdown fraction)."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise VitbenchError(f"--fail-above {text!r}: not a number; write e.g. 5% or 0.05") from None
    if not s.endswith("%") and value >= 1:
        raise VitbenchError(f"--fail-above {text!r}: ambiguous; write {s}% or {value / 100:g}")
    if not (value > 0 and math.isfinite(value)):
        raise VitbenchError(f"--fail-above {text!r}: must be a positive slowdown, e.g. 5%")
    return value


def _medians(x: np.ndarray, idx_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of idx_rows resamples (with replacement) of x, in chunks to bound memory."""
    out = np.empty(idx_rows)
    step = max(1, _CHUNK // len(x))
    for start in range(0, idx_rows, step):
        n = min(step, idx_rows - start)
        out[start:start + n] = np.median(x[rng.integers(0, len(x), (n, len(x)))], axis=1)
    return out


def bootstrap_log_ratios(base: list[float], new: list[float], resamples: int = RESAMPLES,
                         seed: int = SEED) -> np.ndarray:
    """log(median(new*) / median(base*)) for each of `resamples` bootstrap resamples."""
    b, n = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if len(b) == 0 or len(n) == 0 or (b <= 0).any() or (n <= 0).any():
        raise ValueError("bootstrap needs positive samples on both sides")
    rng = np.random.default_rng(seed)
    return np.log(_medians(n, resamples, rng)) - np.log(_medians(b, resamples, rng))


def ratio_ci(base: list[float], new: list[float], resamples: int = RESAMPLES,
             seed: int = SEED) -> tuple[float, float, float]:
    """(median ratio NEW/BASE, CI low, CI high) at 95%."""
    ratio = float(np.median(new) / np.median(base))
    lr = bootstrap_log_ratios(base, new, resamples, seed)
    lo, hi = np.exp(np.percentile(lr, [2.5, 97.5]))
    return ratio, float(lo), float(hi)


@dataclass
class Comparison:
    rows: pd.DataFrame  # one row per matched key (see _COLUMNS)
    groups: pd.DataFrame  # suite, op, rows, geomean, ci_lo, ci_hi, significant
    overall: dict  # geomean, ci_lo, ci_hi, significant, rows
    only_base: list[Key]
    only_new: list[Key]
    base_runs: list[Run]
    new_runs: list[Run]
    warnings: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.only_base or self.only_new)

    def match_summary(self) -> str:
        n = len(self.rows)
        if not self.partial:
            return f"all {n} rows matched"
        def ops(keys: list[Key]) -> str:
            names = sorted({f"{k[0]}/{k[1]}" for k in keys})
            return f" ({', '.join(names[:4])}{' …' if len(names) > 4 else ''})" if names else ""

        return (f"partial comparison: {n} rows matched; {len(self.only_base)} only in BASE"
                f"{ops(self.only_base)}, {len(self.only_new)} only in NEW{ops(self.only_new)}, "
                "not compared")

    def regressions(self, threshold: float) -> pd.DataFrame:
        """Significant slowdowns larger than threshold (0.05 = 5%)."""
        r = self.rows
        return r[(r["significant"] == True) & (r["ratio"] > 1 + threshold)]  # noqa: E712

    def new_failures(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] == "new fails"]


def _rows_by_key(runs: list[Run]) -> dict[Key, tuple[pd.Series, list[float] | None]]:
    out: dict[Key, tuple[pd.Series, list[float] | None]] = {}
    for run in runs:
        for _, r in run.rows.iterrows():
            out[r["key"]] = (r, run.samples.get(r["key"]))
    return out


def _passed(r: pd.Series) -> bool:
    return bool(r["ok"]) and not r["error"] and not pd.isna(r["median_ms"]) and r["median_ms"] > 0


def _status(b: pd.Series, n: pd.Series) -> str:
    pb, pn = _passed(b), _passed(n)
    return "ok" if pb and pn else ("new fails" if pb else ("base fails" if pn else "both fail"))


def _meta_warnings(base: list[Run], new: list[Run]) -> list[str]:
    out = []
    bdev, ndev = sorted({r.device for r in base}), sorted({r.device for r in new})
    if bdev != ndev:
        out.append(f"devices differ: BASE {', '.join(bdev)} vs NEW {', '.join(ndev)}")
    bv = {k: v for r in base for k, v in (r.meta.get("versions") or {}).items()}
    nv = {k: v for r in new for k, v in (r.meta.get("versions") or {}).items()}
    diff = [f"{k} {bv.get(k)} → {nv.get(k)}" for k in sorted(set(bv) | set(nv))
            if bv.get(k) != nv.get(k)]
    if diff:
        out.append("library versions differ: " + ", ".join(diff))
    bh = {r.meta.get("config_hash") for r in base} - {None}
    nh = {r.meta.get("config_hash") for r in new} - {None}
    if bh and nh and bh != nh:
        out.append("configs differ (config_hash); rows are matched by key only")
    if any(r.interpreter for r in base + new):
        out.append("a run used the Triton interpreter: its timings are not representative")
    return out


def _geomean(logs: list[np.ndarray], points: list[float]) -> dict:
    point = float(np.exp(np.mean(np.log(points))))
    lo, hi = np.exp(np.percentile(np.mean(np.vstack(logs), axis=0), [2.5, 97.5]))
    return {"rows": len(points), "geomean": point, "ci_lo": float(lo), "ci_hi": float(hi),
            "significant": bool(lo > 1 or hi < 1)}


def compare_runs(base: list[Run], new: list[Run], resamples: int = RESAMPLES, seed: int = SEED,
                 progress: Callable[[int, int], None] | None = None) -> Comparison:
    """Match BASE and NEW rows by key and compare their latencies (see module docstring)."""
    if resamples < 100:
        raise VitbenchError(f"--resamples {resamples}: use at least 100 (default {RESAMPLES})")
    b_rows, n_rows = _rows_by_key(base), _rows_by_key(new)
    keys = [k for k in n_rows if k in b_rows]
    if not keys:
        bo = sorted({f"{k[0]}/{k[1]}" for k in b_rows})
        no = sorted({f"{k[0]}/{k[1]}" for k in n_rows})
        raise VitbenchError(
            f"no rows match between BASE and NEW by ({', '.join(ROW_KEY)}); BASE has "
            f"{', '.join(bo[:6])}{' …' if len(bo) > 6 else ''}, NEW has "
            f"{', '.join(no[:6])}{' …' if len(no) > 6 else ''}")
    records, logs = [], {}
    for i, key in enumerate(keys):
        (b, bs), (n, ns) = b_rows[key], n_rows[key]
        rec = dict(zip(ROW_KEY, key), base_ms=b["median_ms"], new_ms=n["median_ms"],
                   status=_status(b, n), ratio=math.nan, ci_lo=math.nan, ci_hi=math.nan,
                   significant=None, n_base=len(bs or []), n_new=len(ns or []))
        if rec["status"] == "ok":
            rec["ratio"] = n["median_ms"] / b["median_ms"]
            if bs and ns and min(bs) > 0 and min(ns) > 0:
                lr = bootstrap_log_ratios(bs, ns, resamples, seed + zlib.crc32(repr(key).encode()))
                lo, hi = np.exp(np.percentile(lr, [2.5, 97.5]))
                rec.update(ratio=float(np.median(ns) / np.median(bs)), ci_lo=float(lo),
                           ci_hi=float(hi), significant=bool(lo > 1 or hi < 1))
                logs[key] = lr
            else:  # no raw samples: point estimate only, it carries no resampling spread
                rec["status"] = "no samples"
                logs[key] = np.full(resamples, math.log(rec["ratio"]))
        records.append(rec)
        if progress:
            progress(i + 1, len(keys))
    rows = pd.DataFrame(records)
    groups = []
    for (suite, op), g in rows[rows["ratio"].notna()].groupby(["suite", "op"], sort=False):
        ks = [tuple(r[c] for c in ROW_KEY) for _, r in g.iterrows()]
        groups.append({"suite": suite, "op": op,
                       **_geomean([logs[k] for k in ks], list(g["ratio"]))})
    valid = [k for k in keys if k in logs]
    overall = (_geomean([logs[k] for k in valid], [float(rows.loc[keys.index(k), "ratio"])
                                                    for k in valid]) if valid else {})
    warnings = _meta_warnings(base, new)
    if not valid:
        warnings.append("no matched row has a timing on both sides: nothing to compare")
    nosamp = int((rows["status"] == "no samples").sum())
    if nosamp:
        warnings.append(f"{nosamp} matched row(s) have no raw samples: ratio without CI")
    only_base = [k for k in b_rows if k not in n_rows]
    only_new = [k for k in n_rows if k not in b_rows]
    return Comparison(rows, pd.DataFrame(groups), overall, only_base, only_new, base, new,
                      warnings)
