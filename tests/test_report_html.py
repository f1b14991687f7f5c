"""The report page and its charts (vitbench.report.html / charts / charts_model), and the CLI."""

from __future__ import annotations

import math
import re
import os
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from plotly.offline import get_plotlyjs
from report_fixtures import CPU, kernel_cases, model_cases, write_run
from typer.testing import CliRunner

from vitbench.cli import app
from vitbench.report.charts import kernel_figures
from vitbench.report.charts_model import model_figures
from vitbench.report.html import write_report
from vitbench.report.load import find_runs, load_run

HOSTILE = "<script>alert(1)</script>"


class _Refs(HTMLParser):
    """Collects every URL-bearing attribute and every <script src>/<link>/<iframe>/<img>."""

    def __init__(self):
        super().__init__()
        self.urls, self.external_tags, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("src", "href", "action", "data", "poster", "srcset"):
            if a.get(name):
                self.urls.append(a[name])
        if tag == "script":
            self.scripts += 1
            if "src" in a:
                self.external_tags.append(tag)
        if tag in ("link", "iframe", "img", "object", "embed", "base"):
            self.external_tags.append(tag)


def assert_self_contained(text: str) -> _Refs:
    refs = _Refs()
    refs.feed(text)
    assert not refs.external_tags, refs.external_tags
    bad = [u for u in refs.urls if not u.startswith("#")]
    assert not bad, bad  # only in-page anchors
    # outside scripts (plotly.js holds URLs of map features this page never uses) no URL at all
    markup = re.sub(r"<script>.*?</script>", "", text, flags=re.S)
    assert "http://" not in markup and "https://" not in markup
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # plotly.js embedded exactly once (its first line is a version banner)
    banner = get_plotlyjs()[:60]
    assert text.count(banner) == 1
    return refs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "h100", "kernels")
    write_run(root / "h100", "model", cases=model_cases(HOSTILE))
    write_run(root / "cpu", "kernels", device=CPU, run_id="20261127T040000Z-0001",
              cases=kernel_cases({"layernorm": HOSTILE}))
    return {r.label: r for r in find_runs([root / "h100", root / "cpu"])}


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    """The report of all three runs, written once: (summary, path, text)."""
    out = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    summary = write_report(list(runs.values()), out)
    return summary, out, out.read_text()


@pytest.fixture(scope="module")
def figs(runs):
    """Figures of each run, built once: {run label: [(rows, figure), ...]}."""
    return {label: model_figures(r) if r.suite == "model" else kernel_figures(r)
            for label, r in runs.items()}


def _run(runs, suite, interp=False):
    return next(r for r in runs.values() if r.suite == suite and r.interpreter == interp)


def test_report_is_one_self_contained_file(runs, report):
    s, out, text = report
    assert s.size_bytes == out.stat().st_size < 10e6
    assert_self_contained(text)
    assert s.runs == 3 and s.rows == sum(len(r.rows) for r in runs.values())
    assert text.count('class="plotly-graph-div"') == s.charts
    # 2 kernel runs: overview + 3 ops each; model: one figure (bf16)
    assert s.charts == 2 * 4 + 1
    for run in runs.values():  # header per run
        assert run.run_id in text
    assert "132 SMs" in text and "torch 2.11.0+cu130" in text and "GEMM bf16 750 TFLOP/s" in text
    assert "2026-11-27T05:15:00Z" in text and "warmup_ms" in text  # date, config


def test_strings_from_results_are_escaped(runs, figs, report):
    text = report[2]
    assert HOSTILE not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # in headings / table cells
    for label in runs:
        for _, fig in figs[label]:
            assert HOSTILE not in fig.to_json()  # plotly renders HTML in labels: escaped too


def test_interpreter_charts_say_not_representative(runs, figs):
    for label, run in runs.items():
        assert figs[label]
        for _, fig in figs[label]:
            title = fig.layout.title.text
            assert ("NOT REPRESENTATIVE" in title) == run.interpreter, title


def _traces(fig, name, xaxis):
    return [t for t in fig.data if t.name == name and t.xaxis == xaxis]


def test_kernel_chart_values(runs, figs):
    run = _run(runs, "kernels")
    figs = {df["op"].iloc[0]: fig for df, fig in figs[run.label] if len(df)}
    assert set(figs) == {"matmul", "layernorm", "attention"}
    mm = figs["matmul"]
    titles = [a.text for a in mm.layout.annotations]
    assert "fp16 · throughput (TFLOP/s), p10–p90 band" in titles
    assert "fp32 tf32 · speedup vs torch" in titles and "fp32 tf32 · % of measured peak" in titles
    assert any("(GB/s)" in a.text for a in figs["layernorm"].layout.annotations)
    rows = run.rows
    for sweep in ("fc1", "qkv"):
        sel = rows[(rows["op"] == "matmul") & (rows["dtype"] == "fp16") & (rows["case"] == sweep)]
        tri = sel[sel["provider"] == "triton"].sort_values("size")
        tor = sel[sel["provider"] == "torch"].sort_values("size")
        (tput,) = _traces(mm, f"triton · {sweep}", "x")
        np.testing.assert_allclose(tput.x, tri["size"])
        np.testing.assert_allclose(tput.y, tri["flops"] / tri["median_ms"] / 1e9, rtol=1e-9)
        (speed,) = _traces(mm, f"triton · {sweep}", "x2")
        np.testing.assert_allclose(speed.y, tor["median_ms"].values / tri["median_ms"].values)
        (pct,) = _traces(mm, f"triton · {sweep}", "x3")
        np.testing.assert_allclose(pct.y, tri["pct_of_peak"])
        assert not _traces(mm, f"torch · {sweep}", "x2")  # no speedup line for the baseline
    # the p10-p90 band brackets the median line: lower edge from p90, upper from p10
    idx = [i for i, t in enumerate(mm.data) if t.name == "triton · fc1" and t.xaxis == "x"][0]
    hi, lo = mm.data[idx - 2], mm.data[idx - 1]
    assert lo.fill == "tonexty" and np.all(np.array(lo.y) < np.array(mm.data[idx].y))
    assert np.all(np.array(hi.y) > np.array(mm.data[idx].y))


def test_flagged_points_are_marked(runs, figs):
    run = _run(runs, "kernels")
    ln = next(fig for df, fig in figs[run.label] if len(df) and df["op"].iloc[0] == "layernorm")

    def marked(xaxis):
        marks = [t for t in ln.data if t.mode == "markers" and len(t.x) and t.xaxis == xaxis]
        return {(float(x), s) for t in marks for x, s in zip(t.x, t.marker.symbol)}

    # fp16 row of panels: the ok=false triton row and the noisy torch row, nothing else
    assert marked("x") == {(1576 * 768.0, "x"), (197 * 768.0, "circle-open")}
    assert marked("x4") == {(197 * 768.0, "circle-open")}  # fp32: one noisy row
    # a failed row gets no speedup point
    (speed,) = _traces(ln, "triton", "x2")
    bad = list(speed.x).index(1576 * 768)
    assert math.isnan(speed.y[bad])


def test_model_chart_values(runs, figs):
    run = _run(runs, "model")
    ((rows, fig),) = figs[run.label]
    titles = [a.text for a in fig.layout.annotations]
    for want in ("latency per forward", "throughput (images/s)", "speedup vs hf-eager",
                 "speedup vs hf-sdpa", "speedup vs torch-compile"):
        assert any(want in t for t in titles), want
    r = run.rows
    tri = r[r["provider"] == "triton"].sort_values("batch")
    lat = [t for t in fig.data if t.name == "triton" and t.mode == "lines+markers"]
    np.testing.assert_allclose(lat[0].x, [1, 8, 32])
    np.testing.assert_allclose(lat[0].y, tri["median_ms"])
    np.testing.assert_allclose(lat[1].y, tri["items_per_s"])
    for trace, base in zip(lat[2:], ("hf-eager", "hf-sdpa", "torch-compile")):
        b = r[r["provider"] == base].sort_values("batch")
        np.testing.assert_allclose(trace.y, b["median_ms"].values / tri["median_ms"].values)
    assert len(lat) == 5


def test_model_chart_states_missing_baseline(tmp_path):
    cases = [c for c in model_cases() if c["provider"] != "hf-sdpa"]
    run = load_run(write_run(tmp_path, "model", cases=cases))
    ((_, fig),) = model_figures(run)
    assert any(a.text == "no hf-sdpa rows in this run" for a in fig.layout.annotations)


def test_table_flags_and_sort_markup(report):
    text = report[2]
    # per kernels run: flagged rows + all rows; the model run has nothing flagged
    assert text.count('class="rows sortable"') == 2 + 1 + 2
    assert text.count('<tr class="flag">') == 2 * 2  # ok=false and error row of each kernels run
    assert text.count('<tr class="noisy">') == 2 * 2
    assert text.count("4 flagged row(s)") == 2 and "No flagged rows" in text
    assert "error: CUDA out of memory" in text and "ok=false (max_rel_err 0.04)" in text
    assert "Not drawn (1): triton batch fp16" in text
    assert 'data-v="' in text and "th[aria-sort=ascending]" in text


def test_cli_report_default_is_latest_in_results(tmp_path, monkeypatch):
    write_run(tmp_path / "results" / "h100", "kernels", run_id="20261127T040000Z-old1",
              cases=kernel_cases({"matmul": "oldmatmul"}))
    write_run(tmp_path / "results" / "h100", "kernels", run_id="20261127T050000Z-new1")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["report", "--out", "out/report.html"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "out" / "report.html").read_text()
    assert "20261127T050000Z-new1" in text and "oldmatmul" not in text
    assert "wrote out/report.html" in res.output and "1 run(s), 4 charts" in res.output


def test_cli_report_bad_input_is_one_line_exit_2(tmp_path):
    empty = tmp_path / "kernels-20261127T000000Z-0000.csv"
    empty.write_text("")
    proc = subprocess.run([sys.executable, "-m", "vitbench", "report", str(empty)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "empty file" in lines[0], proc.stderr


def test_report_reads_a_real_kernels_run(tmp_path):
    """End to end with the measurement engine's own files (a quick interpreter run of `add`)."""
    runner = CliRunner()
    res = runner.invoke(app, ["kernels", "--op", "add", "--quick", "--out", str(tmp_path / "r"),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    (run,) = find_runs([tmp_path / "r"])
    assert run.samples and not run.warnings and run.rows["ok"].all()
    assert set(run.samples) == set(run.rows["key"])  # the samples' keys match the rows' keys
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", str(tmp_path / "r"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert_self_contained(text)
    assert text.count('class="plotly-graph-div"') == 2  # overview + add
    res = runner.invoke(app, ["compare", str(tmp_path / "r"), str(tmp_path / "r"),
                              "--fail-above", "1%", "--resamples", "200"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert f"all {len(run.rows)} rows matched" in res.output


def test_run_without_any_timing(tmp_path):
    """Every case failed: the report says so instead of drawing empty charts; compare refuses."""
    cases = kernel_cases()
    for c in cases:
        c["error"], c["ok"] = "CUDA out of memory", False
    csv = write_run(tmp_path / "r", "kernels", cases=cases)
    s = write_report(find_runs([csv]), tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert s.charts == 0 and "No row of this run has a timing to draw" in text
    assert f"{len(cases)} flagged row(s)" in text
