"""Finding, reading and validating result runs (vitbench.report.load)."""

from __future__ import annotations

import json
import math

import pytest
from report_fixtures import write_run

from vitbench.bench.schema import COLUMNS, ROW_KEY
from vitbench.errors import VitbenchError
from vitbench.report.load import find_runs, load_run, row_flags


def _set_meta(csv, **fields):
    meta_path = csv.with_name(csv.name.replace(".csv", ".meta.json"))
    meta = json.loads(meta_path.read_text())
    meta.update(fields)
    meta_path.write_text(json.dumps(meta))
    return csv


def test_folder_gives_latest_run_per_suite_recursively(tmp_path):
    write_run(tmp_path / "h100", "kernels", run_id="20261127T040000Z-aaaa")  # an hour before
    newest = write_run(tmp_path / "h100" / "again", "kernels", run_id="20261127T050000Z-bbbb")
    model = write_run(tmp_path / "h100", "model", run_id="20261127T030000Z-cccc")
    write_run(tmp_path / "_scratch", "kernels", run_id="20991231T000000Z-zzzz")  # skipped
    (tmp_path / "h100" / "kernels-20261126T000000Z-dead.csv").write_text("")  # old, damaged
    (tmp_path / "h100" / "Notes-2026.csv").write_text("x\n")  # not a run name
    runs = find_runs([tmp_path])
    assert sorted(r.csv_path for r in runs) == sorted([newest, model])
    assert {r.suite for r in runs} == {"kernels", "model"}


def test_folder_adds_the_runs_that_ran_alongside_the_latest(tmp_path):
    """One job split over GPUs (batches 1-32 in one process, 128-256 in another) is one result:
    runs of the latest's commit and settings that overlap it in time come too; others do not."""
    def run(run_id, created, finished, **meta):
        csv = write_run(tmp_path, "model", run_id=run_id)
        return _set_meta(csv, created=created, finished=finished, **meta)

    latest = run("20261127T143434Z-9c79", "2026-11-27T14:34:35Z", "2026-11-27T14:38:30Z")
    half = run("20261127T143432Z-e4c3", "2026-11-27T14:34:33Z", "2026-11-27T14:42:43Z")
    run("20261127T120000Z-0001", "2026-11-27T12:00:00Z", "2026-11-27T12:09:00Z")  # earlier rerun
    run("20261127T143431Z-0002", "2026-11-27T14:34:31Z", "2026-11-27T14:40:00Z",
        settings={"VITBENCH_TAIL_SPLIT": "1"})  # an A/B lane beside it
    run("20261127T143433Z-0003", "2026-11-27T14:34:33Z", "2026-11-27T14:40:00Z",
        git_commit="0526ff3")  # another commit
    run("20261127T143433Z-0004", "2026-11-27T14:34:33Z", "2026-11-27T14:40:00Z",
        git_commit=None)  # commit unknown
    assert sorted(r.csv_path for r in find_runs([tmp_path])) == sorted([latest, half])


def test_folder_skips_profile_tables(tmp_path):
    """`vitbench profile` writes its per-kernel table into the same results folder: not a run."""
    model = write_run(tmp_path / "h100", "model", run_id="20261127T030000Z-cccc")
    (tmp_path / "h100" / "profile-vit-base-patch16-224-b1-bf16.csv").write_text(
        "model,batch,dtype,device,activity,graphs,kernel,calls,total_us\n"
        "vit-base-patch16-224,1,bf16,NVIDIA H100 80GB HBM3,cuda,False,total,64,476.3\n")
    (run,) = find_runs([tmp_path])
    assert run.csv_path == model


def test_csv_or_side_file_names_one_run(tmp_path):
    csv = write_run(tmp_path, "kernels")
    meta = csv.with_name(csv.name.replace(".csv", ".meta.json"))
    for path in (csv, meta):
        (run,) = find_runs([path])
        assert run.csv_path == csv and run.run_id == "20261127T051500Z-3f2a"
    assert run.device == "NVIDIA H100 80GB HBM3" and not run.interpreter
    assert run.samples and all(len(k) == len(ROW_KEY) for k in run.samples)
    # every timed row has its samples, and the samples' median is the row's median
    timed = run.rows[run.rows["median_ms"].notna()]
    for _, r in timed.iterrows():
        s = sorted(run.samples[r["key"]])
        assert math.isclose(s[len(s) // 2 - 1] / 2 + s[len(s) // 2] / 2, r["median_ms"],
                            rel_tol=1e-6)


def test_types_are_parsed(tmp_path):
    run = load_run(write_run(tmp_path, "kernels"))
    assert run.rows["ok"].dtype == bool and (~run.rows["ok"]).sum() == 2  # ok=false + error row
    assert run.rows["median_ms"].dtype.kind == "f"
    err = run.rows[run.rows["error"] != ""]
    assert len(err) == 1 and math.isnan(err["median_ms"].iloc[0])
    assert (run.rows["precision"].isin(["", "tf32"])).all()


def test_flags(tmp_path):
    run = load_run(write_run(tmp_path, "kernels"))
    flags = {(r["op"], r["provider"], r["shape"], r["dtype"]): row_flags(r)
             for _, r in run.rows.iterrows()}
    assert flags[("layernorm", "triton", "M=1576;N=768", "fp16")] == ["ok=false (max_rel_err 0.04)"]
    assert flags[("attention", "triton", "B=32;H=12;T=197;d=64", "fp16")] == [
        "error: CUDA out of memory"]
    noisy = flags[("layernorm", "torch", "M=197;N=768", "fp16")]
    assert len(noisy) == 1 and noisy[0].startswith("noise ")
    assert flags[("matmul", "triton", "M=197;N=3072;K=768", "fp16")] == []


def test_no_results(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.csv").write_text("not a run\n")  # no <suite>-<run_id> name
    with pytest.raises(VitbenchError, match="no results found in .*empty"):
        find_runs([tmp_path / "empty"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VitbenchError, match="no results found: results/ does not exist"):
        find_runs(None)
    with pytest.raises(VitbenchError, match="nope.csv: no such result file or folder"):
        find_runs([tmp_path / "nope.csv"])


def test_empty_csv(tmp_path):
    path = tmp_path / "kernels-20261127T000000Z-0000.csv"
    path.write_text("")
    with pytest.raises(VitbenchError, match=f"{path.name}: empty file"):
        load_run(path)
    path.write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(VitbenchError, match="has a header but no rows"):
        load_run(path)


def test_missing_columns_are_named(tmp_path):
    csv = write_run(tmp_path, "kernels")
    lines = csv.read_text().splitlines()
    drop = [COLUMNS.index("median_ms"), COLUMNS.index("ok")]
    keep = lambda cells: ",".join(c for i, c in enumerate(cells) if i not in drop)  # noqa: E731
    csv.write_text("\n".join(keep(ln.split(",")) for ln in lines[:3]) + "\n")
    with pytest.raises(VitbenchError, match="missing columns: median_ms, ok"):
        load_run(csv)


def test_incompatible_schema_version(tmp_path):
    csv = write_run(tmp_path, "kernels")
    text = csv.read_text().splitlines()
    csv.write_text("\n".join([text[0]] + ["2" + ln[1:] for ln in text[1:]]) + "\n")
    with pytest.raises(VitbenchError, match="schema_version 2, but this vitbench reads"):
        load_run(csv)
    csv2 = write_run(tmp_path / "m", "model")
    meta_path = csv2.with_name(csv2.name.replace(".csv", ".meta.json"))
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "schema_version": 7}))
    with pytest.raises(VitbenchError, match="meta.json: schema_version 7"):
        load_run(csv2)


def test_not_a_csv(tmp_path):
    path = tmp_path / "kernels-x.csv"
    path.write_bytes(b'a,b\n"unterminated\n')
    with pytest.raises(VitbenchError, match="kernels-x.csv"):
        load_run(path)


def test_missing_side_files_warn_but_load(tmp_path):
    csv = write_run(tmp_path, "kernels", samples=False)
    csv.with_name(csv.name.replace(".csv", ".meta.json")).unlink()
    run = load_run(csv)
    assert run.meta == {} and run.samples == {}
    assert any("meta.json: missing" in w for w in run.warnings)
    assert any("samples.jsonl: missing" in w for w in run.warnings)
    assert run.device == "NVIDIA H100 80GB HBM3"  # from the rows


def test_truncated_samples_line_is_skipped(tmp_path):
    csv = write_run(tmp_path, "kernels")
    spath = csv.with_name(csv.name.replace(".csv", ".samples.jsonl"))
    lines = spath.read_text().splitlines()
    spath.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])  # crashed mid-write
    run = load_run(csv)
    assert len(run.samples) == len(lines) - 1
    assert any("1 unreadable line" in w for w in run.warnings)


def test_duplicate_keys_keep_last_measurement(tmp_path):
    csv = write_run(tmp_path, "kernels")
    lines = csv.read_text().splitlines()
    cells = lines[1].split(",")
    cells[COLUMNS.index("median_ms")] = "123.5"
    csv.write_text("\n".join(lines + [",".join(cells)]) + "\n")
    run = load_run(csv)
    assert len(run.rows) == len(lines) - 1
    key = tuple(cells[COLUMNS.index(c)] for c in ROW_KEY)
    assert run.rows.set_index("key").loc[[key], "median_ms"].item() == 123.5
