"""GPU probe: energy and time per launch of ViT-B/16's FC2 GEMM with and without its residual.

Issue #6's FC2 + residual target is missed by the same 0.016-0.04 ms whatever the kernel, also
when the epilogue runs under another tile's K loop (docs/performance.md, step 16), and the GPU sits
at its software power cap meanwhile. Hypothesis: at the cap a kernel's time follows its energy,
so the residual's extra memory traffic costs time as energy. If so, for each kernel
    (t_res - t_plain) / t_plain  ~  (E_res - E_plain) / E_plain
and the SM clock is lower with the residual.

For each variant (cuBLAS, the unfused torch pair, vitbench's choice, each Gluon config; with and
without the residual): its output checked against float64 first (a wrong variant is never timed),
WARM launches, then LAUNCHES back-to-back launches between two reads of NVML's energy counter
(mJ since the driver loaded; libnvidia-ml through ctypes, no Python package), CUDA events around
the same launches, and the SM clock and throttle reasons sampled every 10 ms by a thread. ROUNDS
interleaved rounds; per variant the round with the median time is printed: ms and mJ per launch,
mean W, mean and lowest SM MHz, share of samples at the software power cap (reason 0x4).
The operands (A: 310 MB at batch 256) exceed the L2 cache, so no flush between launches.

    python tools/energy_probe.py [--batch 256] [--launches 2000] [--rounds 3]
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


def measure(fn, nvml: NVML, launches: int, warm: int) -> dict[str, float]:
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with Sampler(nvml) as sampler:
        e0 = nvml.energy_mj()
        start.record()
        for _ in range(launches):
            fn()
        end.record()
        end.synchronize()
        e1 = nvml.energy_mj()
    ms = start.elapsed_time(end)
    if sampler.error:
        print(f"  (clock sampling stopped: {sampler.error})", file=sys.stderr)
    clocks = [c for c, _ in sampler.samples] or [0]
    capped = sum(1 for _, r in sampler.samples if r & SW_POWER_CAP)
    return {"ms": ms / launches, "mj": (e1 - e0) / launches, "watts": (e1 - e0) / ms,
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
    p.add_argument("--launches", type=int, default=2000, help="launches between two energy readings")
    p.add_argument("--warm", type=int, default=200, help="launches before each measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = p.parse_args()
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
    rows: dict[str, list[dict]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            rows[name].append(measure(fn, nvml, args.launches, args.warm))
    print(f"== FC2 M={M} N={N} K={K} bf16, {args.launches} launches x {args.rounds} rounds "
          "(the median-time round)", flush=True)
    print(f"  {'variant':36} {'ms':>7} {'mJ':>7} {'W':>5} {'MHz':>5} {'min':>5} {'capped':>6}")
    for name, rs in rows.items():
        m = sorted(rs, key=lambda x: x["ms"])[len(rs) // 2]
        print(f"  {name:36} {m['ms']:7.4f} {m['mj']:7.2f} {m['watts']:5.0f} {m['mhz']:5.0f} "
              f"{m['mhz_min']:5d} {m['capped']:6.0%}", flush=True)
    return 1 if len(rows) != len(candidates) else 0


if __name__ == "__main__":
    raise SystemExit(main())
