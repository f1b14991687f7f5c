"""The report page: per run a header, charts, flagged rows and a sortable table of all rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vitbench.errors import VitbenchError
from vitbench.report.charts import NOT_REPRESENTATIVE, esc, kernel_figures
from vitbench.report.charts_model import model_figures
from vitbench.report.load import Run, row_flags
from vitbench.report.page import figure_html, fmt, page, table_html

ROW_COLUMNS = [  # (column, header) of the rows table
    ("op", "op / model"), ("case", "case"), ("provider", "provider"), ("dtype", "dtype"),
    ("precision", "precision"), ("shape", "shape"), ("batch", "batch"), ("timer", "timer"),
    ("median_ms", "median ms"), ("p10_ms", "p10 ms"), ("p90_ms", "p90 ms"),
    ("noise_pct", "noise %"), ("tflops", "TFLOP/s"), ("gbps", "GB/s"),
    ("pct_of_peak", "% of peak"), ("items_per_s", "images/s"),
    ("speedup_vs_baseline", "speedup"), ("baseline", "vs"), ("max_rel_err", "max rel err"),
    ("ok", "ok"), ("flags", "flags"),
]


@dataclass
class ReportSummary:
    path: Path
    runs: int
    charts: int
    rows: int
    flagged: int
    size_bytes: int


def _versions(meta: dict) -> str:
    v = meta.get("versions")
    if not isinstance(v, dict):
        return ""
    return " · ".join(f"{esc(k)} {esc(x)}" for k, x in v.items())


def _device(run: Run) -> str:
    d = run.meta.get("device")
    if not isinstance(d, dict):
        return esc(run.device)
    extra = [f"{d['sm_count']} SMs" if d.get("sm_count") else "",
             f"{d['memory_gib']} GiB" if d.get("memory_gib") else "",
             f"compute capability {d['compute_capability']}" if d.get("compute_capability")
             else "", f"driver {d['driver']}" if d.get("driver") else "",
             f"CUDA {d['cuda']}" if d.get("cuda") else ""]
    extra = [e for e in extra if e]
    return f"<b>{esc(run.device)}</b>" + (f" ({esc(', '.join(extra))})" if extra else "")


def _peaks(meta: dict) -> str:
    p = meta.get("peaks")
    if not isinstance(p, dict):
        return ""
    out = [f"copy {fmt(p.get('copy_gbps'))} GB/s"] if p.get("copy_gbps") else []
    gemm = p.get("gemm_tflops")
    if isinstance(gemm, dict):
        out += [f"GEMM {esc(k)} {fmt(v)} TFLOP/s" for k, v in gemm.items() if v]
    return esc(" · ".join(out)) if out else "not measured"


def run_header(run: Run) -> str:
    """Device, versions, dates, config, measured peaks; the interpreter warning up front."""
    m = run.meta
    finished = m.get("finished")
    unfinished = '<span class="bad">did not finish (crashed or still running)</span>'
    when = f"{esc(m.get('created', '?'))} → " + (esc(finished) if finished else unfinished)
    n_flag = sum(bool(row_flags(r)) for _, r in run.rows.iterrows())
    items = [("device", _device(run)), ("backend", esc(run.backend)),
             ("versions", _versions(m)), ("date", when if m else ""),
             ("git commit", esc(m.get("git_commit") or "")),
             ("config hash", esc(m.get("config_hash") or "")),
             ("measured peaks", _peaks(m)), ("note", esc(m.get("note") or "")),
             ("rows", f"{len(run.rows)} ({n_flag} flagged)"),
             ("file", esc(run.csv_path))]
    cells = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in items if v)
    out = ""
    if run.interpreter:
        out += f'<div class="danger">⚠ {NOT_REPRESENTATIVE}: this run used no GPU.</div>'
    out += "".join(f'<div class="warn">{esc(w)}</div>' for w in run.warnings)
    out += f'<div class="card"><table class="meta">{cells}</table>'
    if isinstance(m.get("config"), dict):
        cfg = json.dumps(m["config"], indent=2, sort_keys=True, default=str)
        out += f"<details><summary>config</summary><pre>{esc(cfg)}</pre></details>"
    return out + "</div>"


def _table_frame(run: Run) -> tuple[pd.DataFrame, list[str]]:
    df = run.rows.copy()
    df["noise_pct"] = df["noise"] * 100
    df["flags"] = ["; ".join(row_flags(r)) for _, r in df.iterrows()]
    classes = ["flag" if (not r["ok"] or r["error"]) else ("noisy" if r["flags"] else "")
               for _, r in df.iterrows()]
    return df, classes


def flagged_html(run: Run) -> str:
    df, _ = _table_frame(run)
    bad = df[df["flags"] != ""]
    if bad.empty:
        return '<div class="card good">No flagged rows: every check passed, noise ≤ 10%.</div>'
    cols = [("op", "op / model"), ("case", "case"), ("provider", "provider"), ("dtype", "dtype"),
            ("shape", "shape"), ("flags", "why flagged")]
    return (f'<div class="danger">{len(bad)} flagged row(s): failed correctness check, error, '
            f"or noise &gt; 10%</div>"
            + table_html(bad, cols, f"flagged-{_slug(run)}", cell_class={"flags": lambda _: "bad"}))


def _caption(rows: pd.DataFrame) -> str:
    text = ("dots: median; shaded: p10–p90; <b>×</b> red: failed correctness check; "
            "<b>○</b>: noise &gt; 10%.")
    missing = rows[rows["median_ms"].isna()]
    if not missing.empty:
        lst = "; ".join(esc(f"{r['provider']} {r['case']} {r['dtype']} {r['shape']}: "
                            f"{r['error'] or 'no timing'}") for _, r in missing.iterrows())
        text += f' <span class="bad">Not drawn ({len(missing)}): {lst}</span>'
    return text


def _has_values(col: pd.Series) -> bool:
    return bool(col.notna().any() if col.dtype.kind in "fi" else col.astype(str).ne("").any())


def _slug(run: Run) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in f"{run.suite}-{run.run_id}")


def run_section(run: Run) -> tuple[str, int]:
    """One run: header, charts, flagged rows, all rows. Returns (html, number of charts)."""
    slug = _slug(run)
    charts = model_figures(run) if run.suite == "model" else kernel_figures(run)
    parts = [f'<h2 id="{slug}">{esc(run.suite)} run <code>{esc(run.run_id)}</code></h2>',
             run_header(run), "<h3>Charts</h3>"]
    if not charts:
        parts.append('<div class="warn">No row of this run has a timing to draw.</div>')
    for i, (rows, fig) in enumerate(charts):
        parts.append(figure_html(fig, f"{slug}-chart-{i}", _caption(rows) if len(rows) else ""))
    df, classes = _table_frame(run)
    cols = [(c, h) for c, h in ROW_COLUMNS if c in ("ok", "flags") or _has_values(df[c])]
    parts += ["<h3>Flagged rows</h3>", flagged_html(run),
              "<h3>All rows</h3><div class=\"muted small\">click a header to sort</div>",
              table_html(df, cols, f"rows-{slug}", classes,
                         cell_class={"ok": lambda v: "" if v else "bad"})]
    return "".join(parts), len(charts)


def render_report(runs: list[Run], title: str = "vitbench report") -> tuple[str, int]:
    if not runs:
        raise VitbenchError("no runs to report")
    nav = " ".join(f'<a href="#{_slug(r)}">{esc(r.label)}</a>' for r in runs)
    body, n_charts = [f"<nav class=\"card\">Runs: {nav}</nav>"], 0
    for run in runs:
        html_, n = run_section(run)
        body.append(html_)
        n_charts += n
    return page(title, "".join(body)), n_charts


def write_report(runs: list[Run], out: Path, title: str = "vitbench report") -> ReportSummary:
    text, n_charts = render_report(runs, title)
    out = Path(out)
    if out.is_dir():
        raise VitbenchError(f"--out {out}: is a folder, give a file name such as report.html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise VitbenchError(f"--out {out}: cannot write ({exc.strerror})") from None
    flagged = sum(bool(row_flags(r)) for run in runs for _, r in run.rows.iterrows())
    return ReportSummary(out, len(runs), n_charts, sum(len(r.rows) for r in runs), flagged,
                         out.stat().st_size)
