"""`vitbench compare`: matching, bootstrap CIs, geomeans, --fail-above, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from report_fixtures import CPU, VERSIONS, kernel_cases, write_run
from typer.testing import CliRunner

from vitbench.cli import app
from vitbench.errors import VitbenchError
from vitbench.report.compare import compare_runs, parse_threshold, ratio_ci
from vitbench.report.compare_html import write_compare_page
from vitbench.report.load import find_runs

R = 500  # resamples in these tests (the CLI default is 2000)


@pytest.mark.parametrize("text,value", [("5%", 0.05), (" 2.5% ", 0.025), ("0.05", 0.05),
                                        ("12.5%", 0.125)])
def test_parse_threshold(text, value):
    assert math.isclose(parse_threshold(text), value)


@pytest.mark.parametrize("text,msg", [("abc", "not a number"), ("5", "ambiguous; write 5%"),
                                      ("-5%", "positive"), ("0%", "positive"),
                                      ("nan", "positive")])
def test_parse_threshold_rejects(text, msg):
    with pytest.raises(VitbenchError, match=f"--fail-above.*{msg}"):
        parse_threshold(text)


def test_bootstrap_ci_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.lognormal(0, 0.05, 60)
    same = rng.lognormal(0, 0.05, 60)
    ratio, lo, hi = ratio_ci(base, same, R)
    assert lo < 1 < hi and lo < ratio < hi
    ratio, lo, hi = ratio_ci(base, 1.5 * rng.lognormal(0, 0.05, 60), R)
    assert 1 < lo < 1.5 < hi and abs(ratio - 1.5) < 0.05
    assert ratio_ci(base, same, R, seed=3) == ratio_ci(base, same, R, seed=3)  # reproducible
    assert ratio_ci(base, same, R, seed=3) != ratio_ci(base, same, R, seed=4)


def test_bootstrap_false_positive_rate_is_near_5_percent():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 150
    for _ in range(trials):
        a, b = rng.lognormal(0, 0.1, 40), rng.lognormal(0, 0.1, 40)
        _, lo, hi = ratio_ci(a, b, 400, seed=int(rng.integers(1 << 30)))
        hits += lo > 1 or hi < 1
    assert hits / trials < 0.12  # nominal 5%; the percentile bootstrap of a median runs a bit high


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """BASE and NEW kernels runs: NEW re-measured (other seed) with layernorm 20% slower."""
    root = tmp_path_factory.mktemp("cmp")
    base = write_run(root / "base", "kernels", seed=1)
    new = write_run(root / "new", "kernels", seed=2, slow={"layernorm": 1.2},
                    run_id="20261127T061500Z-4b4b")
    return base, new, compare_runs(find_runs([base]), find_runs([new]), R)


def test_rows_matched_and_ratios(pair):
    base, new, cmp = pair
    b, n = find_runs([base])[0], find_runs([new])[0]
    assert len(cmp.rows) == len(b.rows) == len(n.rows) and not cmp.partial
    assert cmp.match_summary() == f"all {len(b.rows)} rows matched"
    for _, r in cmp.rows[cmp.rows["status"] == "ok"].iterrows():
        key = tuple(r[c] for c in ("suite", "op", "case", "provider", "dtype", "precision",
                                   "shape", "timer"))
        assert math.isclose(r["ratio"], np.median(n.samples[key]) / np.median(b.samples[key]))
        assert r["ci_lo"] <= r["ratio"] <= r["ci_hi"]
    statuses = cmp.rows.set_index(["op", "provider", "shape", "dtype"])["status"]
    assert statuses[("attention", "triton", "B=32;H=12;T=197;d=64", "fp16")] == "both fail"
    assert statuses[("layernorm", "triton", "M=1576;N=768", "fp16")] == "both fail"
    assert statuses[("layernorm", "triton", "M=1576;N=768", "fp32")] == "ok"
    assert (statuses == "both fail").sum() == 2


def test_slowdown_is_significant_and_unchanged_ops_are_not(pair):
    _, _, cmp = pair
    rows = cmp.rows[cmp.rows["status"] == "ok"]
    ln = rows[rows["op"] == "layernorm"]
    assert ln["significant"].all() and (ln["ratio"] > 1.1).all()
    assert (ln["ci_lo"].lt(1.2) & ln["ci_hi"].gt(1.2)).mean() >= 0.8  # CIs cover the truth
    rest = rows[rows["op"] != "layernorm"]
    assert rest["significant"].mean() <= 0.15 and (abs(rest["ratio"] - 1) < 0.03).all()
    g = cmp.groups.set_index("op")
    assert g.loc["layernorm", "significant"] and abs(g.loc["layernorm", "geomean"] - 1.2) < 0.02
    for op in ("matmul", "attention"):
        assert not g.loc[op, "significant"] and abs(g.loc[op, "geomean"] - 1) < 0.01
        r = rows[rows["op"] == op]["ratio"]
        assert math.isclose(g.loc[op, "geomean"], float(np.exp(np.log(r).mean())))
        assert g.loc[op, "rows"] == len(r)
    assert len(cmp.regressions(0.05)) == ln["significant"].sum()
    assert cmp.regressions(0.25).empty


def test_no_match_and_partial_match(tmp_path):
    base = write_run(tmp_path / "b", "kernels")
    other = write_run(tmp_path / "o", "model")
    with pytest.raises(VitbenchError, match="no rows match between BASE and NEW.*kernels/matmul"
                                            ".*NEW has model/vit-b16"):
        compare_runs(find_runs([base]), find_runs([other]), R)
    fewer = [c for c in kernel_cases() if c["op"] != "attention"]
    new = write_run(tmp_path / "n", "kernels", cases=fewer, seed=5)
    cmp = compare_runs(find_runs([base]), find_runs([new]), R)
    assert cmp.partial and len(cmp.only_base) == 6 and not cmp.only_new
    assert "partial comparison" in cmp.match_summary()
    assert "6 only in BASE (kernels/attention)" in cmp.match_summary()


def test_new_failure_and_missing_samples(tmp_path):
    base = write_run(tmp_path / "b", "kernels")
    cases = kernel_cases()
    for c in cases:
        if c["op"] == "matmul" and c["provider"] == "triton" and c["dtype"] == "fp16":
            c["ok"], c["max_rel_err"] = False, 0.5  # NEW computes garbage
    new = write_run(tmp_path / "n", "kernels", cases=cases, samples=False, seed=3)
    cmp = compare_runs(find_runs([base]), find_runs([new]), R)
    assert len(cmp.new_failures()) == 8
    nos = cmp.rows[cmp.rows["status"] == "no samples"]
    assert len(nos) and nos["ci_lo"].isna().all() and nos["significant"].isna().all()
    assert any("no raw samples" in w for w in cmp.warnings)


def test_environment_differences_warn(tmp_path):
    base = write_run(tmp_path / "b", "kernels")
    new = write_run(tmp_path / "n", "kernels", device=CPU, seed=2,
                    versions={**VERSIONS, "triton": "3.7.0"})
    cmp = compare_runs(find_runs([base]), find_runs([new]), R)
    text = " | ".join(cmp.warnings)
    assert "devices differ: BASE NVIDIA H100 80GB HBM3 vs NEW cpu (Triton interpreter)" in text
    assert "triton 3.6.0 → 3.7.0" in text and "not representative" in text


def test_cli_compare_fail_above_and_html(pair, tmp_path):
    base, new, _ = pair
    runner = CliRunner()
    page = tmp_path / "cmp.html"
    res = runner.invoke(app, ["compare", str(base.parent), str(new), "--fail-above", "5%",
                              "--html", str(page), "--resamples", str(R)], terminal_width=200)
    assert res.exit_code == 1, res.output
    assert "FAIL:" in res.output and "layernorm" in res.output and "slower" in res.output
    text = page.read_text()
    assert "Comparison NEW / BASE" in text and text.count('class="plotly-graph-div"') == 4
    assert "https://" not in text.split("<script>")[0]
    res = runner.invoke(app, ["compare", str(base), str(new), "--fail-above", "30%",
                              "--resamples", str(R)], terminal_width=100)
    assert res.exit_code == 0, res.output
    assert "OK: no significant slowdown above 30.0%" in res.output


def test_compare_page_with_report(pair, tmp_path):
    _, _, cmp = pair
    out = write_compare_page(cmp, tmp_path / "c.html", with_report=True)
    text = out.read_text()
    # comparison: geomean + 3 ops; NEW's report: overview + 3 ops
    assert text.count('class="plotly-graph-div"') == 4 + 4
    assert "BASE: kernels" in text and "NEW: kernels" in text


def _vitbench(*args):
    return subprocess.run([sys.executable, "-m", "vitbench", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})


def test_cli_compare_bad_input_exit_2(tmp_path):
    base = write_run(tmp_path / "b", "kernels")
    meta = base.with_name(base.name.replace(".csv", ".meta.json"))
    bad = tmp_path / "x" / "kernels-20261127T000000Z-0000.csv"
    bad.parent.mkdir()
    bad.write_text("suite,op\nkernels,matmul\n")
    meta2 = bad.with_name(bad.name.replace(".csv", ".meta.json"))
    meta2.write_text(json.dumps(json.loads(meta.read_text())))
    proc = _vitbench("compare", str(base), str(bad))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "missing columns" in lines[0] and bad.name in lines[0]


def test_nothing_comparable_when_every_row_failed(tmp_path):
    cases = kernel_cases()
    for c in cases:
        c["error"], c["ok"] = "CUDA out of memory", False
    base = write_run(tmp_path / "b", "kernels", cases=cases)
    cmp = compare_runs(find_runs([base]), find_runs([base]), R)
    assert (cmp.rows["status"] == "both fail").all() and cmp.groups.empty and not cmp.overall
    assert "no matched row has a timing on both sides: nothing to compare" in cmp.warnings
    out = write_compare_page(cmp, tmp_path / "c.html")
    assert "both fail" in out.read_text()
    res = CliRunner().invoke(app, ["compare", str(base), str(base), "--fail-above", "5%"],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "both fail" in res.output
