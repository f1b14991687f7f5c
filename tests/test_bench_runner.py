"""The engine with plain-torch providers: gate, errors, interleaving, resume after Ctrl-C."""

import csv

import pytest
import torch

from vitbench.bench.runner import Case, Provider, Repeats, precision_mode, run_suite
from vitbench.bench.schema import COLUMNS, ROW_KEY
from vitbench.bench.timers import Timer

FAST = Repeats(budget_s=0.0, min_reps=3, max_reps=3, warmup_s=0.0, min_warmup=1)


def mm_case(n: int, label: str = "sq") -> Case:
    def inputs():
        return torch.randn(n, n + 3), torch.randn(n + 3, n)

    return Case(suite="t", op="mm", case=label, dtype="fp32", shape={"M": n, "K": n + 3},
                inputs=inputs, reference=lambda a: a[0].double() @ a[1].double(),
                precision="ieee", size=n, flops=2 * n * n * (n + 3), bytes=4 * 3 * n * (n + 3))


def good(name="torch", baseline=True) -> Provider:
    return Provider(name, lambda c, a: (lambda: a[0] @ a[1]), is_baseline=baseline)


def rows_of(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def run(cases, providers, tmp_path, **kw):
    kw.setdefault("repeats", FAST)
    return run_suite("t", cases, providers, out_dir=tmp_path, timer="host", progress=False, **kw)


def test_wrong_provider_is_recorded_not_ok_and_without_speedup(tmp_path):
    wrong = Provider("wrong", lambda c, a: (lambda: a[0] @ a[1] * 1.001))
    res = run([mm_case(20), mm_case(33)], [good(), wrong, good("also", False)], tmp_path)
    rows = rows_of(res.csv_path)
    assert len(rows) == 6
    for r in rows:
        if r["provider"] == "wrong":
            assert r["ok"] == "false" and r["speedup_vs_baseline"] == ""
            assert float(r["max_rel_err"]) == pytest.approx(1e-3, rel=1e-2)
            assert float(r["median_ms"]) > 0  # still timed, just not compared
        else:
            assert r["ok"] == "true" and float(r["speedup_vs_baseline"]) > 0


def test_failing_baseline_gives_nobody_a_speedup(tmp_path):
    bad_base = Provider("torch", lambda c, a: (lambda: a[0] @ a[1] + 1), is_baseline=True)
    res = run([mm_case(20)], [bad_base, good("mine", False)], tmp_path)
    rows = {r["provider"]: r for r in rows_of(res.csv_path)}
    assert rows["torch"]["ok"] == "false" and rows["mine"]["ok"] == "true"
    assert rows["mine"]["speedup_vs_baseline"] == "" and rows["torch"]["speedup_vs_baseline"] == ""


def test_unwritten_output_fails_the_gate(tmp_path):
    lazy = Provider("lazy", lambda c, a: (lambda: torch.empty(a[0].shape[0], a[1].shape[1])))
    res = run([mm_case(17), mm_case(24)], [good(), lazy], tmp_path)
    for r in rows_of(res.csv_path):
        assert (r["ok"] == "true") == (r["provider"] == "torch")


def test_erroring_case_is_recorded_and_the_sweep_goes_on(tmp_path):
    oom_case = mm_case(25, "oom")

    def no_memory():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    oom_case.inputs = no_memory

    def picky(case, args):
        if case.shape["M"] == 30:
            raise RuntimeError("Triton Error [CUDA]: invalid argument\nsecond line")
        return lambda: args[0] @ args[1]

    cases = [mm_case(20), oom_case, mm_case(30), mm_case(40)]
    res = run(cases, [good(), Provider("picky", picky)], tmp_path)
    rows = rows_of(res.csv_path)
    assert len(rows) == 8
    by = {(r["case"], r["shape"], r["provider"]): r for r in rows}
    for prov in ("torch", "picky"):
        r = by[("oom", "M=25;K=28", prov)]
        assert r["ok"] == "false" and "CUDA out of memory" in r["error"] and r["median_ms"] == ""
    r = by[("sq", "M=30;K=33", "picky")]
    assert r["error"] == "RuntimeError: Triton Error [CUDA]: invalid argument"  # one line
    assert r["ok"] == "false" and r["speedup_vs_baseline"] == ""
    assert by[("sq", "M=30;K=33", "torch")]["ok"] == "true"
    assert by[("sq", "M=40;K=43", "picky")]["ok"] == "true"  # after the errors: measured


def test_providers_are_interleaved_in_shuffled_order(tmp_path):
    calls = []

    def logged(name):
        def prepare(case, args):
            def fn():
                calls.append(name)
                return args[0] @ args[1]
            return fn
        return Provider(name, prepare, is_baseline=name == "a")

    reps = Repeats(budget_s=0.0, min_reps=40, max_reps=40, warmup_s=0.0, min_warmup=0)
    run([mm_case(8)], [logged("a"), logged("b")], tmp_path, repeats=reps)
    timed = calls[2:]  # after one gate call each
    assert len(timed) == 80
    rounds = [tuple(timed[i:i + 2]) for i in range(0, 80, 2)]
    assert all(set(r) == {"a", "b"} for r in rounds)  # every round runs each provider once
    assert len(set(rounds)) == 2  # both orders occur (all-same has probability 2^-39)


def test_resume_after_ctrl_c_completes_without_duplicates(tmp_path):
    cases = [mm_case(n) for n in (10, 12, 14, 16, 18)]
    seen = []

    def interrupt_at_case_3(case, args):
        seen.append(case.shape["M"])
        if len(seen) == 4:
            raise KeyboardInterrupt
        return lambda: args[0] @ args[1]

    with pytest.raises(KeyboardInterrupt):
        run(cases, [good(), Provider("mine", interrupt_at_case_3)], tmp_path)
    (csv_path,) = tmp_path.glob("t-*.csv")
    partial = rows_of(csv_path)
    assert len(partial) == 3 * 2  # three whole cases kept, the one in flight lost
    meta_text = csv_path.with_name(csv_path.stem + ".meta.json").read_text()
    assert '"finished": null' in meta_text

    res = run(cases, [good(), good("mine", False)], tmp_path, resume=True)
    assert res.csv_path == csv_path and res.skipped == 6 and len(res.rows) == 4
    rows = rows_of(csv_path)
    keys = [tuple(r[k] for k in ROW_KEY) for r in rows]
    assert len(rows) == 10 and len(set(keys)) == 10
    assert len({r["run_id"] for r in rows}) == 1
    assert all(r["ok"] == "true" for r in rows)
    samples = csv_path.with_name(csv_path.stem + ".samples.jsonl").read_text().splitlines()
    assert len(samples) == 10
    assert list(tmp_path.glob("t-*.csv")) == [csv_path]


def test_resume_uses_the_baseline_row_already_in_the_csv(tmp_path):
    run([mm_case(16)], [good()], tmp_path)
    res = run([mm_case(16)], [good(), good("mine", False)], tmp_path, resume=True)
    (new,) = res.rows
    assert new["provider"] == "mine" and new["speedup_vs_baseline"] > 0


def test_precision_mode_sets_and_restores_tf32():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with precision_mode("tf32"):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    with precision_mode("ieee"):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


class FakeDeviceTimer(Timer):
    """Deferred handles like the CUDA-event timers: record() enqueues, collect() resolves."""

    name = "fake"

    def __init__(self):
        self.setups = self.rounds = self.releases = 0
        self.clock = 0.0

    def setup(self, fn):
        self.setups += 1
        return fn

    def begin_round(self):
        self.rounds += 1

    def record(self, fn):
        fn()
        self.clock += 1.0
        return self.clock  # a "pending" handle

    def collect(self, handles):
        return [0.5 + 0.01 * (h % 3) for h in handles]

    def release(self):
        self.releases += 1


def test_deferred_timer_protocol(tmp_path):
    timer = FakeDeviceTimer()
    reps = Repeats(budget_s=0.0, min_reps=120, max_reps=120, warmup_s=0.0, min_warmup=1)
    res = run_suite("t", [mm_case(8), mm_case(9)], [good(), good("b", False)], out_dir=tmp_path,
                    timer=timer, repeats=reps, progress=False)
    assert timer.setups == 4 and timer.releases == 2  # per provider per case; per case
    assert timer.rounds == 2 * 120  # one round = each provider once
    for r in res.rows:
        assert r["n"] == 120 and r["timer"] == "fake"
        assert r["median_ms"] == pytest.approx(0.51)
