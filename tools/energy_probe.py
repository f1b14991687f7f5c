"""GPU probe: energy and time per launch of ViT-B/16's FC2 GEMM with and without its residual.

Issue #6's FC2 + residual target is missed by the same 0.016-0.04 ms whatever the kernel, also
when the epilogue runs under another tile's K loop (docs/performance.md, step 16), and the GPU sits
at its software power cap meanwhile. Hypothesis: at the cap a kernel's time follows its energy,
so the residual's extra memory traffic costs time as energy. If so, for each kernel
    (t_res - t_plain) / t_plain  ~  (E_res - E_plain) / E_plain
and the SM clock is lower with the residual.

For each variant (cuBLAS, the unfused torch pair, vitbench's choice, each Gluon config; with and
without the residual): its output checked against float64 first (a wrong variant is never timed),
WARM launches, then back-to-back launches for at least SECONDS between two reads of NVML's energy
counter (mJ since the driver loaded; libnvidia-ml through ctypes, no Python package), CUDA events
around the same launches, and the SM clock and throttle reasons sampled every 10 ms by a thread.
ROUNDS interleaved rounds; per variant the round with the median time is printed: ms and mJ per
launch, mean W, mean and lowest SM MHz, share of samples at the software power cap (reason 0x4).
The operands (A: 310 MB at batch 256) exceed the L2 cache, so no flush between launches.

The counter moves in steps: on an H100 (2026-11-28) rounds of 2,000 FC2 launches (0.8 s) gave
energies that clustered at 246, 281 and 313 mJ per launch whatever the kernel, i.e. steps of about
66 J. Hence rounds by duration (--seconds, default 5 s: a step is about 2% of a round).

At the power cap, energy is cap x time for every kernel, so the energies alone cannot say why one
is slower. --gap-ms G runs bursts of --burst launches with G ms idle between them, so the GPU stays
under its cap: the time per launch is then the kernel's at uncapped clocks (CUDA events around each
burst), and the energy is net of the idle power measured before (W x idle time subtracted).

    python tools/energy_probe.py [--batch 256] [--seconds 5] [--rounds 3] [--only gluon,cuBLAS]
                                 [--gap-ms 50 --burst 20]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import threading
import time

import torch
import torch.nn.functional as F
import triton

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from vitbench.envinfo import device_info  # noqa: E402
from vitbench.kernels import matmul_gluon as mg  # noqa: E402
from vitbench.kernels.matmul import matmul as vb_matmul  # noqa: E402

N, K = 768, 3072  # FC2 of ViT-B/16
TOL = 2e-2  # bf16, relative to the reference's max, as tools/gluon_probe.py
NVML_CLOCK_SM = 1
SW_POWER_CAP = 0x4


class NVML:
    """The few NVML calls this probe needs, through ctypes."""

    def __init__(self, uuid: str | None) -> None:
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        self._check(self.lib.nvmlInit_v2(), "nvmlInit_v2")
        self.handle = ctypes.c_void_p()
        if uuid:
            self._check(self.lib.nvmlDeviceGetHandleByUUID(uuid.encode(), ctypes.byref(self.handle)),
                        "nvmlDeviceGetHandleByUUID")
        else:  # NVML counts every GPU of the host; CUDA only the visible ones
            index = int((os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0])
            self._check(self.lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(self.handle)),
                        "nvmlDeviceGetHandleByIndex_v2")

    @staticmethod
    def _check(rc: int, what: str) -> None:
        if rc != 0:
            raise RuntimeError(f"{what} returned NVML error {rc}")

    def energy_mj(self) -> int:
        v = ctypes.c_ulonglong()
        self._check(self.lib.nvmlDeviceGetTotalEnergyConsumption(self.handle, ctypes.byref(v)),
                    "nvmlDeviceGetTotalEnergyConsumption")
        return v.value

    def sm_mhz(self) -> int:
        v = ctypes.c_uint()
        self._check(self.lib.nvmlDeviceGetClockInfo(self.handle, NVML_CLOCK_SM, ctypes.byref(v)),
                    "nvmlDeviceGetClockInfo")
        return v.value

    def reasons(self) -> int:
        # the newer name first; drivers keep the older, deprecated one too
        try:
            fn, name = self.lib.nvmlDeviceGetCurrentClocksEventReasons, "nvmlDeviceGetCurrentClocksEventReasons"
        except AttributeError:
            fn, name = self.lib.nvmlDeviceGetCurrentClocksThrottleReasons, "nvmlDeviceGetCurrentClocksThrottleReasons"
        v = ctypes.c_ulonglong()
        self._check(fn(self.handle, ctypes.byref(v)), name)
        return v.value


class Sampler:
    """SM clock and throttle reasons every `period` seconds while in its `with` block."""

    def __init__(self, nvml: NVML, period: float = 0.01) -> None:
        self.nvml, self.period = nvml, period
        self.samples: list[tuple[int, int]] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((self.nvml.sm_mhz(), self.nvml.reasons()))
            except RuntimeError as exc:  # reported once, after the measurement
                self.error = str(exc)
                return
            time.sleep(self.period)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def launches_for(ms_per_launch: float, seconds: float, minimum: int = 100, burst: int = 1) -> int:
    """Launches that keep the GPU busy for `seconds` (at least `minimum`), a whole number of bursts."""
    n = max(minimum, int(seconds * 1000.0 / max(ms_per_launch, 1e-6)) + 1)
    return -(-n // burst) * burst


def idle_watts(nvml: NVML, seconds: float = 2.0) -> float:
    """Mean power over `seconds` with nothing launched."""
    torch.cuda.synchronize()
    time.sleep(0.5)
    e0, t0 = nvml.energy_mj(), time.perf_counter()
    time.sleep(seconds)
    return (nvml.energy_mj() - e0) / (time.perf_counter() - t0) / 1000.0


def measure(fn, nvml: NVML, launches: int, warm: int, burst: int = 0, gap_s: float = 0.0,
            idle_w: float = 0.0) -> dict[str, float]:
    """Back to back (burst 0), or bursts of `burst` launches with `gap_s` idle after each: then the
    time is the bursts' (CUDA events) and the energy net of `idle_w` over the rest of the wall time."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    size = burst if burst > 0 else launches
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(launches // size)]
    with Sampler(nvml) as sampler:
        e0, t0 = nvml.energy_mj(), time.perf_counter()
        for start, end in events:
            start.record()
            for _ in range(size):
                fn()
            end.record()
            if gap_s > 0:
                end.synchronize()
                time.sleep(gap_s)
        torch.cuda.synchronize()
        e1, wall = nvml.energy_mj(), time.perf_counter() - t0
    ms = sum(s.elapsed_time(e) for s, e in events)
    mj = (e1 - e0) - idle_w * max(wall - ms / 1000.0, 0.0) * 1000.0 if gap_s > 0 else e1 - e0
    n = len(events) * size
    if sampler.error:
        print(f"  (clock sampling stopped: {sampler.error})", file=sys.stderr)
    clocks = [c for c, _ in sampler.samples] or [0]
    capped = sum(1 for _, r in sampler.samples if r & SW_POWER_CAP)
    return {"ms": ms / n, "mj": mj / n, "watts": mj / ms,
            "mhz": statistics.fmean(clocks), "mhz_min": min(clocks),
            "capped": capped / max(len(sampler.samples), 1)}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def variants(a, w, b, r, out) -> dict[str, tuple]:
    """name -> (launch, whether it adds the residual)."""
    v = {
        "cuBLAS F.linear": (lambda: torch.addmm(b, a, w.T, out=out), False),
        "torch unfused": (lambda: torch.add(F.linear(a, w, b), r, out=out), True),
        "vitbench matmul": (lambda: vb_matmul(a, w, b, epilogue="residual", residual=r, out=out), True),
        "vitbench no-res": (lambda: vb_matmul(a, w, b, out=out), False),
    }
    for name, cfg in mg.CANDIDATES.items():
        v[name] = (lambda cfg=cfg: mg.matmul_gluon(a, w, b, epilogue="residual", residual=r, out=out,
                                                   config=cfg), True)
        v[f"{name} no-res"] = (lambda cfg=cfg: mg.matmul_gluon(a, w, b, out=out, config=cfg), False)
    return v


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256, help="ViT-B/16 batch (FC2 rows = batch x 197)")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="GPU-busy seconds per measurement (the energy counter moves in ~66 J steps)")
    p.add_argument("--warm", type=int, default=200, help="launches before each measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--only", default="", help="substrings, ',' or '+' between: only variants whose name has one")
    p.add_argument("--gap-ms", type=float, default=0.0,
                   help="idle ms after each burst (0: back to back), to stay under the power cap")
    p.add_argument("--burst", type=int, default=20, help="launches per burst with --gap-ms")
    args = p.parse_args()
    if args.seconds <= 0 or args.rounds < 1 or args.burst < 1 or args.gap_ms < 0:
        p.error("--seconds must be > 0, --rounds and --burst >= 1, --gap-ms >= 0")
    if not torch.cuda.is_available():
        print("energy_probe: needs a CUDA GPU", file=sys.stderr)
        return 2
    dev = device_info()
    nvml = NVML(dev.uuid)
    print(f"{dev.name} {dev.uuid} torch {torch.__version__} triton {triton.__version__}", flush=True)
    M = args.batch * 197
    torch.manual_seed(0)
    a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16) / K ** 0.5
    b = torch.randn(N, device="cuda", dtype=torch.bfloat16)
    r = torch.randn(M, N, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    plain_ref = F.linear(a.double(), w.double(), b.double())
    fns = {}
    candidates = variants(a, w, b, r, out)
    if args.only:
        keys = [k.strip() for k in args.only.replace("+", ",").split(",") if k.strip()]
        candidates = {n: v for n, v in candidates.items() if any(k in n for k in keys)}
        if not candidates:
            print(f"energy_probe: no variant matches --only {args.only!r}", file=sys.stderr)
            return 2
    for name, (fn, res) in candidates.items():
        out.fill_(float("nan"))
        fn()
        torch.cuda.synchronize()
        err = rel_err(out, plain_ref + r.double() if res else plain_ref)
        if err <= TOL:
            fns[name] = fn
        else:
            print(f"  {name:36} WRONG (rel err {err:.2e}): not timed")
    del plain_ref
    burst, gap_s = (args.burst, args.gap_ms / 1000.0) if args.gap_ms > 0 else (0, 0.0)
    idle_w = idle_watts(nvml) if gap_s > 0 else 0.0
    counts = {}
    for name, fn in fns.items():  # launches per measurement from a short timed run of each
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        counts[name] = launches_for((time.perf_counter() - t0) * 1000.0 / 20, args.seconds, burst=max(burst, 1))
    rows: dict[str, list[dict]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            rows[name].append(measure(fn, nvml, counts[name], args.warm, burst, gap_s, idle_w))
    mode = (f"bursts of {burst} with {args.gap_ms:g} ms idle between (idle {idle_w:.0f} W subtracted)"
            if gap_s > 0 else "back to back")
    print(f"== FC2 M={M} N={N} K={K} bf16, {mode}, ~{args.seconds:g} s busy x {args.rounds} rounds "
          "(the median-time round)", flush=True)
    print(f"  {'variant':36} {'ms':>7} {'mJ':>7} {'W':>5} {'MHz':>5} {'min':>5} {'capped':>6}")
    for name, rs in rows.items():
        m = sorted(rs, key=lambda x: x["ms"])[len(rs) // 2]
        print(f"  {name:36} {m['ms']:7.4f} {m['mj']:7.2f} {m['watts']:5.0f} {m['mhz']:5.0f} "
              f"{m['mhz_min']:5d} {m['capped']:6.0%}", flush=True)
    return 1 if len(rows) != len(candidates) else 0


if __name__ == "__main__":
    raise SystemExit(main())
