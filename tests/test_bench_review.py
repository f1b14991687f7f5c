"""Review fixes of the engine: element-wise gate, resume refusals and retries, baseline from the
CSV, summary of the whole run, SDPA backends in the metadata, model fp32 limit."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

from vitbench.bench import csvio, metadata
from vitbench.bench.measure import elem_limit, max_elem_err, max_rel_err
from vitbench.bench.runner import Case, Provider, Repeats, run_suite
from vitbench.bench.schema import META_KEYS
from vitbench.errors import VitbenchError
from vitbench.report.load import load_run

FAST = Repeats(budget_s=0.0, min_reps=2, max_reps=2, warmup_s=0.0, min_warmup=0)


def mm_case(n: int) -> Case:
    return Case(suite="t", op="mm", case="sq", dtype="fp32", shape={"M": n, "K": n + 3},
                inputs=lambda: (torch.randn(n, n + 3), torch.randn(n + 3, n)),
                reference=lambda a: a[0].double() @ a[1].double(), precision="ieee", size=n)


def good(name="torch", baseline=True) -> Provider:
    return Provider(name, lambda c, a: (lambda: a[0] @ a[1]), is_baseline=baseline)


def run(cases, providers, tmp_path, **kw):
    kw.setdefault("repeats", FAST)
    return run_suite("t", cases, providers, out_dir=tmp_path, timer="host", progress=False, **kw)


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- 1. the gate: one unwritten row of a large output -----------------------------------------
R, C = 20000, 64  # one row in 20000: ||row|| / ||all|| ~ 0.007 < fp16's 1e-2 norm limit


def copy_case() -> Case:
    return Case(suite="t", op="copy", case="big", dtype="fp16", shape={"R": R, "C": C},
                inputs=lambda: torch.randn(R, C).half(), reference=lambda x: x.double())


def test_norm_alone_misses_a_zeroed_row_the_element_check_does_not():
    x = torch.randn(R, C).half()
    out = x.clone()
    out[0] = 0  # what stale, zeroed memory leaves behind
    ref = x.double()
    assert max_rel_err(out, ref) < 1e-2  # the norm check alone passes it
    assert max_elem_err(out, ref) > elem_limit(1e-2)
    assert max_elem_err(x, ref) == 0.0
    nan = x.clone()
    nan[5, 5] = float("nan")
    assert max_elem_err(nan, ref) == float("inf")


def test_row_left_unwritten_after_another_allocation_fails_the_gate(tmp_path):
    def lazy(case, x):
        def fn():
            scratch = torch.ones(R, C, dtype=torch.float16)  # takes the first free block
            out = torch.empty(R, C, dtype=torch.float16)
            out[1:] = x[1:] * scratch[1:]  # row 0 never written
            return out
        return fn

    def zero_row(case, x):  # deterministic stand-in: the unwritten row holds zeros
        def fn():
            out = x.clone()
            out[0] = 0
            return out
        return fn

    provs = [Provider("torch", lambda c, x: (lambda: x.clone()), is_baseline=True),
             Provider("lazy", lazy), Provider("zero_row", zero_row)]
    res = run([copy_case()], provs, tmp_path)
    by = {r["provider"]: r for r in res.rows}
    assert by["torch"]["ok"] and by["torch"]["max_rel_err"] == 0.0
    # The lazy row holds whatever memory was there: any value fails, by the norm check (finite
    # error) or the per-element check (inf). The zero row passes the norm check and must be
    # caught per element, which reports inf.
    assert by["lazy"]["ok"] is False, by["lazy"]
    zero = by["zero_row"]
    assert zero["ok"] is False and zero["max_rel_err"] == float("inf"), zero
    for name in ("lazy", "zero_row"):
        assert by[name]["speedup_vs_baseline"] is None  # no speedup from a failed row


@pytest.mark.gpu
def test_stale_correct_memory_is_poisoned_on_gpu(tmp_path):
    """prepare() leaves a correct result in the caching allocator; fn allocates a scratch first,
    then its output, and skips one row: only poisoning (not the element check) catches it."""
    n = 4096
    case = Case(suite="t", op="copy", case="big", dtype="fp32", shape={"R": n, "C": n},
                inputs=lambda: torch.randn(n, n, device="cuda"), reference=lambda x: x.double())

    def stale(case, x):
        y = x.clone()
        del y  # freed: its block holds the right answer

        def fn():
            scratch = torch.empty_like(x)
            out = torch.empty_like(x)
            out[1:] = x[1:] + 0 * scratch[1:].nan_to_num()
            return out
        return fn

    res = run([case], [Provider("stale", stale, is_baseline=True)], tmp_path)
    assert res.rows[0]["ok"] is False and res.rows[0]["max_rel_err"] == float("inf")


# --- 2. resume refuses when what is measured differs ------------------------------------------
def test_resume_refuses_other_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("VITBENCH_MATMUL", raising=False)
    run([mm_case(8)], [good()], tmp_path)
    monkeypatch.setenv("VITBENCH_MATMUL", "tma")
    with pytest.raises(VitbenchError, match="VITBENCH_MATMUL.*unset.*'tma'"):
        run([mm_case(8)], [good()], tmp_path, resume=True)


def test_resume_refuses_a_changed_resume_key_but_not_other_cases(tmp_path):
    cfg = {"model": "a", "batches": [1], "files": {"x.yaml": {"k": 1}},
           "resume_keys": ["model", "files.*"]}
    run([mm_case(8)], [good()], tmp_path, config=cfg)
    # other case lists and another config file: fine
    more = {**cfg, "batches": [1, 2], "files": {"x.yaml": {"k": 1}, "y.yaml": {"k": 5}}}
    res = run([mm_case(8), mm_case(9)], [good()], tmp_path, config=more, resume=True)
    assert res.skipped == 1 and len(res.rows) == 1
    with pytest.raises(VitbenchError, match="config model was \"a\".*now \"b\""):
        run([mm_case(8)], [good()], tmp_path, config={**cfg, "model": "b"}, resume=True)
    with pytest.raises(VitbenchError, match="config files entry 'x.yaml' differs"):
        run([mm_case(8)], [good()], tmp_path, resume=True,
            config={**cfg, "files": {"x.yaml": {"k": 2}}})
    # an explicit resume_keys argument works like the config's
    with pytest.raises(VitbenchError, match="config batches"):
        run([mm_case(8)], [good()], tmp_path, config={**cfg, "batches": [3]}, resume=True,
            resume_keys=["batches"])


def test_kernel_config_file_edit_blocks_resume(tmp_path, monkeypatch):
    from vitbench.suites.kernels import plan_kernels, run_kernels

    cfg = tmp_path / "k.yaml"
    text = ("dtypes: [fp32]\nproviders: [torch]\ntimer: host\ncases:\n"
            "  - op: add\n    label: t\n    shape: {B: 1, T: 5, D: 8}\n")
    cfg.write_text(text)
    out = tmp_path / "out"
    run_kernels(plan_kernels(config=cfg), out_dir=out, progress=False)
    plan = plan_kernels(config=cfg, providers="torch,triton")  # more providers: fine
    assert plan.config["resume_keys"] == ["timer", "hold", "files.*"]
    assert plan.config["baseline"] == "torch"
    res = run_kernels(plan, out_dir=out, resume=True, progress=False)
    assert res.skipped == 1 and [r["provider"] for r in res.rows] == ["triton"]
    cfg.write_text(text.replace("T: 5", "T: 6"))
    with pytest.raises(VitbenchError, match="k.yaml' differs"):
        run_kernels(plan_kernels(config=cfg), out_dir=out, resume=True, progress=False)


def test_model_plan_names_its_resume_keys():
    from vitbench.suites.model import plan_model

    cfg = plan_model(batch="1", model="vit-tiny-test", dtype="fp32", providers="hf-sdpa").config
    assert cfg["baseline"] == "hf-sdpa"
    assert {"model", "weights", "graphs", "compile_mode", "timer", "gate"} <= set(cfg["resume_keys"])
    assert set(cfg["resume_keys"]) <= set(cfg)
    assert not {"batches", "dtypes", "providers", "precisions"} & set(cfg["resume_keys"])


# --- 3. model gate: exact fp32 within 1e-4, whatever HF's own error ---------------------------
class FakeModels:
    """HF-like models: float64 exact, the others off by `noise` (relative)."""

    def __init__(self, noise: float):
        self.w = torch.randn(12, 5, dtype=torch.float64)
        self.noise = noise

    def get(self, kind, dtype, precision="ieee"):
        def model(pixel_values):
            logits = pixel_values.double().flatten(1) @ self.w
            if dtype != torch.float64:
                logits = logits * (1 + self.noise)
            return SimpleNamespace(logits=logits.to(dtype))
        return model


@pytest.mark.parametrize("dtype,precision,limit", [
    ("fp32", "ieee", 1e-4), ("fp32", "", 1e-4), ("fp32", "tf32", 1.5e-3), ("fp16", "", 1.5e-3)])
def test_model_gate_limit(dtype, precision, limit):
    from vitbench.suites.model import ModelCase, _reference

    case = ModelCase(suite="model", op="m", case="b2", dtype=dtype, shape={"B": 2},
                     inputs=lambda: None, reference=lambda x: x, precision=precision)
    x = torch.rand(2, 3, 2, 2).to(torch.float32 if dtype == "fp32" else torch.float16)
    _reference(FakeModels(1e-3), case, x)  # HF's own error: 1e-3
    assert case.limit() == pytest.approx(limit, rel=5e-2)  # + fp16 rounding


# --- 4. errored rows are measured again; readers take the last row per key --------------------
def test_resume_retries_errors_but_not_skips(tmp_path):
    calls = []

    def flaky(case, args):
        calls.append(case.shape["M"])
        if len(asked) == 1:  # the first run only (asked is cleared before the resume)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return lambda: args[0] @ args[1]

    asked = []
    never = Provider("never", lambda c, a: (lambda: a[0] @ a[1]),
                     supports=lambda c: asked.append(c) or "not for this shape")
    first = run([mm_case(8)], [good(), Provider("flaky", flaky), never], tmp_path)
    by = {r["provider"]: r for r in first.rows}
    assert "CUDA out of memory" in by["flaky"]["error"] and by["never"]["error"].startswith("skipped:")
    calls.clear()
    asked.clear()
    res = run([mm_case(8)], [good(), Provider("flaky", flaky), never], tmp_path, resume=True)
    assert calls == [8] and asked == []  # flaky prepared again; torch and the skip kept
    assert res.skipped == 2 and [r["provider"] for r in res.rows] == ["flaky"]
    assert res.rows[0]["ok"] and res.rows[0]["speedup_vs_baseline"] > 0
    assert len(rows_of(res.csv_path)) == 4  # the error row stays in the file ...
    last = {r["provider"]: r for r in csvio.read_rows(res.csv_path)}
    assert len(last) == 3 and last["flaky"]["ok"] == "true" and last["flaky"]["error"] == ""
    df = load_run(res.csv_path).rows  # ... and every reader takes the later row
    assert len(df) == 3 and bool(df[df["provider"] == "flaky"]["ok"].iloc[0])
    # a third resume has nothing left to do
    calls.clear()
    again = run([mm_case(8)], [good(), Provider("flaky", flaky), never], tmp_path, resume=True)
    assert calls == [] and again.rows == [] and again.skipped == 3


# --- 5. baseline rows already in the CSV count when the baseline is not selected --------------
@pytest.mark.parametrize("how", ["config", "argument"])
def test_baseline_from_csv_without_selecting_it(tmp_path, how):
    run([mm_case(16)], [good()], tmp_path)
    kw = {"config": {"baseline": "torch"}} if how == "config" else {"baseline": "torch"}
    res = run([mm_case(16)], [good("mine", False)], tmp_path, resume=True, **kw)
    (row,) = res.rows
    assert row["baseline"] == "torch" and row["speedup_vs_baseline"] > 0


# --- 6. the summary shows the whole run, kept rows too ----------------------------------------
def test_summary_covers_kept_and_new_rows(tmp_path):
    run([mm_case(10)], [good()], tmp_path)
    buf = io.StringIO()
    console = Console(file=buf, width=250, color_system=None)
    run([mm_case(10), mm_case(12)], [good()], tmp_path, resume=True, console=console)
    text = buf.getvalue()
    assert "M=10;K=13" in text and "M=12;K=15" in text
    assert "1 new rows, 1 kept from before" in text


def test_typed_row_round_trip(tmp_path):
    res = run([mm_case(9)], [good()], tmp_path)
    (back,) = [csvio.typed_row(r) for r in csvio.read_rows(res.csv_path)]
    new = res.rows[0]
    assert back["ok"] is True and back["error"] is None and back["n"] == new["n"]
    assert back["median_ms"] == pytest.approx(new["median_ms"], rel=1e-5)


# --- 7. SDPA backends in the metadata ---------------------------------------------------------
def test_sdpa_backends_recorded(tmp_path):
    assert "sdpa_backends" in META_KEYS
    res = run([mm_case(8)], [good()], tmp_path)
    meta = json.loads(res.meta_path.read_text())
    assert "sdpa_backends" in meta
    on_gpu = meta["backend"] == "cuda"
    assert (meta["sdpa_backends"] is None) == (not on_gpu)
    found = metadata.sdpa_backends(True)
    assert {"flash", "mem_efficient", "math"} <= set(found)
    assert found["math"] == torch.backends.cuda.math_sdp_enabled()
    assert metadata.sdpa_backends(False) is None


@pytest.mark.gpu
def test_sdpa_backends_on_gpu(tmp_path):
    meta = json.loads(run([mm_case(8)], [good()], tmp_path).meta_path.read_text())
    assert meta["sdpa_backends"]["flash"] == torch.backends.cuda.flash_sdp_enabled()


def test_git_commit_variable_wins_over_the_checkout(monkeypatch):
    # A copied tree can carry a stale .git: the commit the user names is the one recorded.
    from vitbench.bench.metadata import git_commit

    monkeypatch.setenv("VITBENCH_GIT_COMMIT", "0123abc")
    assert git_commit() == "0123abc"
    monkeypatch.delenv("VITBENCH_GIT_COMMIT")
    assert git_commit() != "0123abc"


def test_resume_refuses_a_run_started_at_another_commit(monkeypatch):
    # gpu_session.sh resumes across device calls, each with a freshly copied tree.
    from vitbench.bench.metadata import resume_mismatch, settings

    monkeypatch.setenv("VITBENCH_GIT_COMMIT", "bbbbbbb")
    meta = {"git_commit": "aaaaaaa", "settings": settings(), "config": {}}
    assert "commit aaaaaaa" in resume_mismatch(meta, {}, [])
    meta["git_commit"] = "bbbbbbb"
    assert resume_mismatch(meta, {}, []) is None
    meta["git_commit"] = None  # unknown then: nothing to compare
    assert resume_mismatch(meta, {}, []) is None


def _tiny_run_meta(tmp_path) -> dict:
    """The metadata of a one-case, one-provider run (an fp32 add, host timer)."""
    case = Case(suite="t", op="add", case="v", dtype="fp32", shape={"N": 8},
                inputs=lambda: (torch.ones(8), torch.ones(8)),
                reference=lambda a: (a[0] + a[1]).double())
    prov = Provider("a", lambda c, args: (lambda: args[0] + args[1]), is_baseline=True)
    reps = Repeats(budget_s=0.0, min_reps=2, max_reps=2, warmup_s=0.0, min_warmup=1)
    res = run_suite("t", [case], [prov], out_dir=tmp_path, timer="host", repeats=reps, progress=False)
    return json.loads(res.meta_path.read_text())


def test_run_metadata_records_the_gemm_kernel_choices(tmp_path, monkeypatch):
    # Which kernel each GEMM shape ran on (VITBENCH_MATMUL=auto) is part of what was measured.
    from vitbench.kernels import _dispatch

    monkeypatch.setattr(_dispatch, "_CHOICES", {
        ("matmul", (8, 197, 768), 768, 2304, torch.bfloat16, "none", True, False, "cuda:0"): "tma",
        ("matmul-rows", (32, 197, 3072), 3072, 768, torch.bfloat16, "residual", True, True, "cuda:0",
         3072, 768, 768): "rows 5632+672"})
    meta = _tiny_run_meta(tmp_path)
    assert meta["kernel_choices"] == [
        "matmul a=(8, 197, 768) n=2304 bfloat16 none bias -> tma",
        "matmul-rows a=(32, 197, 3072) n=768 bfloat16 residual bias in-place -> rows 5632+672"]


def test_run_metadata_records_the_autotune_picks(tmp_path, monkeypatch):
    # Each autotuned kernel's pick per shape: two processes of one commit can pick differently.
    import triton

    from vitbench.kernels import _common

    def kernel(a_ptr, N, BLOCK: int):
        pass

    class Tuner:  # what autotune_picks reads of triton's Autotuner
        fn, keys = staticmethod(kernel), ["N"]
        cache = {(8, "torch.float32"): triton.Config({"BLOCK": 32}, num_warps=2, num_stages=1)}

    monkeypatch.setattr(_common, "TUNERS", [Tuner()])
    meta = _tiny_run_meta(tmp_path)
    assert meta["autotune_picks"] == ["kernel (8,) torch.float32 -> BLOCK=32 w2 s1"]
