"""Holding the GPU while the host enqueues a chunk (device timers, kernels suite only)."""

import json
import random
import statistics
import time
from types import SimpleNamespace

import pytest
import torch

from vitbench.bench import measure, timers
from vitbench.bench.case import Case, Provider, Repeats
from vitbench.bench.metadata import resume_mismatch
from vitbench.bench.runner import run_suite
from vitbench.bench.timers import HOLD_MAX_RECORDS, HOLD_MAX_S, Timer, make_timer
from vitbench.envinfo import settings
from vitbench.errors import VitbenchError

SLEEP_S = 0.002  # simulated host cost of one call (a Python launch path)


class RecordingTimer(Timer):
    """A deferred-handle timer that logs the protocol and times the host's enqueue of a chunk."""

    name = "fake"

    def __init__(self, hold: bool = True):
        self.hold = hold
        self.log: list[str] = []
        self.holds: list[float] = []
        self.enqueue_s: list[float] = []  # per chunk: from the hold to the first collect
        self.records_per_chunk: list[int] = []
        self._t0: float | None = None

    def hold_for(self, seconds):
        self.log.append("hold")
        self.holds.append(seconds)
        self.records_per_chunk.append(0)
        self._t0 = time.perf_counter()

    def record(self, fn):
        self.log.append("record")
        self.records_per_chunk[-1] += 1
        fn()
        return 0.5

    def collect(self, handles):
        if self._t0 is not None:
            self.enqueue_s.append(time.perf_counter() - self._t0)
            self._t0 = None
        self.log.append("collect")
        return list(handles)


def tiny_case() -> Case:
    return Case(suite="t", op="add", case="v", dtype="fp32", shape={"N": 8},
                inputs=lambda: (torch.ones(8), torch.ones(8)),
                reference=lambda a: (a[0] + a[1]).double())


def slow(name: str, host_s: float = SLEEP_S) -> Provider:
    def prepare(case, args):
        def fn():
            time.sleep(host_s)  # host cost before the "launch"
            return args[0] + args[1]
        return fn
    return Provider(name, prepare, is_baseline=name == "a")


def run(tmp_path, timer, providers, reps):
    return run_suite("t", [tiny_case()], providers, out_dir=tmp_path, timer=timer, repeats=reps,
                     progress=False)


def test_loop_holds_once_per_chunk_before_enqueueing_it(tmp_path):
    timer = RecordingTimer()
    reps = Repeats(budget_s=0.08, min_reps=20, max_reps=20, warmup_s=0.0, min_warmup=2)
    res = run(tmp_path, timer, [slow("a"), slow("b")], reps)
    assert all(r["ok"] and r["n"] == 20 for r in res.rows)
    # hold, then that chunk's records, then its collects: a hold never sits between records
    log = "".join("H" if e == "hold" else "r" if e == "record" else "c" for e in timer.log)
    first, *parts = log.split("H")
    assert first == "" and parts
    for part in parts:
        assert part == "r" * len(part.rstrip("c")) + "cc"  # one collect per provider
    per_chunk = [n // 2 for n in timer.records_per_chunk]  # rounds of 2 providers
    assert sum(per_chunk) == 20 and len(timer.holds) == len(per_chunk) > 1
    for k, hold in enumerate(timer.holds):
        assert 0 < hold <= HOLD_MAX_S
        # at least 1.5x the simulated host cost of the chunk it covers
        assert hold >= 1.5 * 2 * SLEEP_S * per_chunk[k]
        if k:  # follows what the previous chunk's enqueue really took, per round
            want = 1.5 * timer.enqueue_s[k - 1] / per_chunk[k - 1] * per_chunk[k]
            assert hold == pytest.approx(min(want, HOLD_MAX_S), rel=0.1)


def test_hold_follows_the_host_cost(tmp_path):
    cheap, dear = RecordingTimer(), RecordingTimer()
    reps = Repeats(budget_s=0.0, min_reps=60, max_reps=60, warmup_s=0.0, min_warmup=1)
    run(tmp_path / "cheap", cheap, [slow("a", 0.0005)], reps)
    # 24x the host cost: a loaded CI machine stretches a 0.5 ms sleep to 1-2 ms (it failed there
    # once at 8x: 6.9 against 4 x 1.9 ms), never a 12 ms one by as much
    run(tmp_path / "dear", dear, [slow("a", 0.012)], reps)

    def per_round(t):  # chunks after the first: the hold per round of the chunk it covers
        assert len(t.holds) > 1
        return statistics.median(h / n for h, n in zip(t.holds[1:], t.records_per_chunk[1:]))

    assert per_round(dear) > 4 * per_round(cheap)
    assert per_round(dear) >= 1.5 * 0.012 and per_round(cheap) >= 1.5 * 0.0005


def test_hold_is_capped(tmp_path):
    timer = RecordingTimer()
    reps = Repeats(budget_s=0.0, min_reps=3, max_reps=3, warmup_s=0.0, min_warmup=1)
    run(tmp_path, timer, [slow("a", 0.02), slow("b", 0.02)], reps)  # 40 ms per round
    assert timer.holds == [HOLD_MAX_S] * 3


def test_held_chunks_stay_inside_the_launch_queue_and_unheld_ones_are_unchanged(tmp_path):
    fast = [Provider(n, lambda c, a: (lambda: a[0] + a[1]), is_baseline=n == "a")
            for n in ("a", "b", "c")]
    reps = Repeats(budget_s=10.0, min_reps=200, max_reps=200, warmup_s=0.0, min_warmup=1)
    held, free = RecordingTimer(hold=True), RecordingTimer(hold=False)
    run(tmp_path / "held", held, fast, reps)
    run(tmp_path / "free", free, fast, reps)
    assert max(held.records_per_chunk) <= HOLD_MAX_RECORDS
    assert max(free.records_per_chunk) == 50 * 3  # the loop's usual 50 rounds per chunk


def test_hold_seconds_bounds():
    assert measure.hold_seconds(0.0, 10) == timers.HOLD_MIN_S
    assert measure.hold_seconds(1e-3, 4) == pytest.approx(1.5 * 4e-3)
    assert measure.hold_seconds(1.0, 1) == HOLD_MAX_S


# --- the timers ------------------------------------------------------------------------------
def test_host_timer_ignores_hold():
    t = make_timer("host", hold=True)
    assert t.hold is False
    t.hold_for(0.01)  # a no-op
    assert t.collect([t.record(lambda: None)])[0] >= 0


def test_device_timers_need_a_gpu_with_or_without_hold(monkeypatch):
    monkeypatch.setattr(timers, "HAS_CUDA", False)
    with pytest.raises(VitbenchError, match="host"):
        make_timer("cold", hold=True)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Just enough of torch.cuda for the timers' constructors and hold_for on a CPU machine."""
    sleeps: list[int] = []
    monkeypatch.setattr(timers, "HAS_CUDA", True)
    monkeypatch.setattr(timers, "INTERPRETER", False)
    monkeypatch.setattr(timers, "_cycles_per_ms", 1.5e6)  # calibrated already: 1.5 GHz
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: sleeps.append(cycles))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(L2_cache_size=50 * 2**20))
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda n, dtype, device: real_empty(0, dtype=dtype))
    return sleeps


@pytest.mark.parametrize("name,cls", [("cold", timers.EventTimer), ("warm", timers.EventTimer),
                                      ("graph", timers.GraphTimer)])
def test_make_timer_carries_hold(fake_cuda, name, cls):
    for hold in (True, False):
        t = make_timer(name, hold=hold)
        assert type(t) is cls and t.name == name and t.hold is hold


def test_hold_for_sleeps_calibrated_capped_cycles(fake_cuda):
    t = make_timer("cold", hold=True)
    t.hold_for(0.002)
    t.hold_for(1.0)
    t.hold_for(-1.0)  # nothing to hold: nothing enqueued
    assert fake_cuda == [int(2 * 1.5e6), int(HOLD_MAX_S * 1e3 * 1.5e6)]
    fake_cuda.clear()
    make_timer("cold", hold=False).hold_for(0.002)
    assert fake_cuda == []


def test_warm_round_sleep_only_without_hold(fake_cuda):
    make_timer("warm", hold=True).begin_round()
    assert fake_cuda == []
    make_timer("warm", hold=False).begin_round()
    assert fake_cuda == [200_000]


# --- the suites: kernels hold, the model does not; resume checks it -----------------------------
def test_kernels_plan_holds_and_records_it():
    from vitbench.suites.kernels import plan_kernels

    plan = plan_kernels("add", quick=True, providers="torch", timer="cold")
    assert plan.hold is True and plan.config["hold"] is True
    assert "hold" in plan.config["resume_keys"]
    host = plan_kernels("add", quick=True, providers="torch", timer="host")  # nothing to hold
    assert host.hold is False and host.config["hold"] is False


def test_model_plan_does_not_hold():
    from vitbench.suites.model import plan_model

    plan = plan_model(batch="1", providers="hf-eager", model="vit-tiny-test", dtype="fp32")
    assert plan.hold is False and "hold" not in plan.config


def test_run_plan_passes_hold_to_the_engine(monkeypatch, tmp_path):
    from vitbench.suites import common
    from vitbench.suites.kernels import plan_kernels

    seen = {}
    monkeypatch.setattr(common, "run_suite", lambda *a, **kw: seen.update(kw))
    common.run_plan(plan_kernels("add", quick=True, providers="torch", timer="cold"), out_dir=tmp_path)
    assert seen["hold"] is True and seen["timer"] in timers.TIMERS


def test_run_suite_makes_its_timer_with_hold(monkeypatch, tmp_path):
    from vitbench.bench import runner

    made = []

    def fake_make(name, hold=False):
        made.append((name, hold))
        return make_timer("host")

    monkeypatch.setattr(runner, "make_timer", fake_make)
    reps = Repeats(budget_s=0.0, min_reps=2, max_reps=2, warmup_s=0.0, min_warmup=1)
    run_suite("t", [tiny_case()], [slow("a", 0.0)], out_dir=tmp_path, timer="cold", hold=True,
              repeats=reps, progress=False)
    assert made == [("cold", True)]


def test_resume_mismatch_names_hold():
    keys = ["timer", "hold", "files.*"]
    meta = {"settings": settings(), "config": {"timer": "cold", "hold": False, "files": {}}}  # no commit
    new = {"timer": "cold", "hold": True, "files": {}}
    assert "hold" in resume_mismatch(meta, new, keys)
    meta["config"]["hold"] = True
    assert resume_mismatch(meta, new, keys) is None


def test_kernels_resume_refuses_a_run_made_with_another_hold(tmp_path):
    from vitbench.suites.kernels import plan_kernels, run_kernels

    plan = plan_kernels("add", quick=True, providers="torch")  # host timer here: no hold
    plan.cases = plan.cases[:1]
    res = run_kernels(plan, out_dir=tmp_path, progress=False)
    meta = json.loads(res.meta_path.read_text())
    assert meta["config"]["hold"] is False
    meta["config"]["hold"] = True  # as if the run had been made holding
    res.meta_path.write_text(json.dumps(meta))
    with pytest.raises(VitbenchError, match="hold"):
        run_kernels(plan_kernels("add", quick=True, providers="torch"), out_dir=tmp_path,
                    resume=True, progress=False)


# --- on a GPU: the hold keeps launch latency out of a tiny kernel's samples ----------------------
def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.gpu
def test_hold_keeps_host_launch_cost_out_of_a_tiny_kernel():
    x = torch.randn(4096, device="cuda")
    y = torch.randn(4096, device="cuda")

    def fn():  # a tiny kernel behind ~200 µs of host work (a slow Python launch path)
        _busy(200e-6)
        return x + y

    medians = {}
    for hold in (True, False):
        timer = make_timer("cold", hold=hold)
        slot = measure.Slot(Provider("p", lambda c, a: fn), fn=fn)
        for _ in range(5):  # warm-up, then one call for the loop's estimates (as _gate does)
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        slot.host_s = time.perf_counter() - t0
        torch.cuda.synchronize()
        slot.est_s = time.perf_counter() - t0
        reps = Repeats(budget_s=0.2, min_reps=200, max_reps=400, warmup_s=0.0, min_warmup=1)
        measure._time_interleaved([slot], timer, reps, random.Random(0))
        assert slot.error is None and slot.stats is not None
        medians[hold] = slot.stats.median_ms
    assert medians[True] < 0.050, medians
    assert medians[False] > medians[True], medians
