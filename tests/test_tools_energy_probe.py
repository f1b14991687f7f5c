"""tools/energy_probe.py's NVML wrapper and clock sampler against a fake libnvidia-ml (the probe
itself needs a GPU): the calls it makes, their arguments, and what it reads back."""

from __future__ import annotations

import ctypes
import importlib.util
import time
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "tools" / "energy_probe.py"


@pytest.fixture
def probe():
    spec = importlib.util.spec_from_file_location("energy_probe", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeNVML:
    """The NVML entry points the probe uses; values written through the byref arguments."""

    def __init__(self, event_reasons: bool = True):
        self.calls: list[str] = []
        self.energy = 1000
        # an older driver: only the deprecated name
        self.missing = set() if event_reasons else {"nvmlDeviceGetCurrentClocksEventReasons"}

    def __getattr__(self, name):  # the NVML symbols: name -> self._name, as a CDLL resolves them
        if name.startswith("_") or name in self.missing:
            raise AttributeError(name)
        return getattr(self, "_" + name)

    def _nvmlInit_v2(self):
        self.calls.append("init")
        return 0

    def _nvmlDeviceGetHandleByUUID(self, uuid, handle):
        self.calls.append(f"uuid {uuid.decode()}")
        handle._obj.value = 7
        return 0

    def _nvmlDeviceGetHandleByIndex_v2(self, index, handle):
        self.calls.append(f"index {index}")
        handle._obj.value = 7
        return 0

    def _nvmlDeviceGetTotalEnergyConsumption(self, handle, out):
        assert handle.value == 7
        self.energy += 500
        out._obj.value = self.energy
        return 0

    def _nvmlDeviceGetClockInfo(self, handle, clock, out):
        assert clock == 1  # NVML_CLOCK_SM
        out._obj.value = 1755
        return 0

    def _nvmlDeviceGetCurrentClocksEventReasons(self, handle, out):
        self.calls.append("event")
        out._obj.value = 0x4
        return 0

    def _nvmlDeviceGetCurrentClocksThrottleReasons(self, handle, out):
        self.calls.append("throttle")
        out._obj.value = 0x4
        return 0


@pytest.mark.parametrize("event_reasons", [True, False])
def test_nvml_wrapper_reads_through_the_handle(probe, monkeypatch, event_reasons):
    fake = FakeNVML(event_reasons)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: fake)
    nvml = probe.NVML("GPU-1234")
    assert fake.calls == ["init", "uuid GPU-1234"]
    assert nvml.energy_mj() == 1500 and nvml.energy_mj() == 2000
    assert nvml.sm_mhz() == 1755
    assert nvml.reasons() & probe.SW_POWER_CAP
    assert fake.calls[-1] == ("event" if event_reasons else "throttle")


def test_nvml_without_uuid_takes_the_first_visible_index(probe, monkeypatch):
    fake = FakeNVML()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    probe.NVML(None)
    assert fake.calls == ["init", "index 3"]


def test_nvml_errors_raise(probe, monkeypatch):
    fake = FakeNVML()
    fake._nvmlDeviceGetHandleByUUID = lambda uuid, handle: 13
    monkeypatch.setattr(ctypes, "CDLL", lambda name: fake)
    with pytest.raises(RuntimeError, match="nvmlDeviceGetHandleByUUID returned NVML error 13"):
        probe.NVML("GPU-1234")


def test_sampler_collects_until_its_block_ends(probe, monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeNVML())
    with probe.Sampler(probe.NVML("GPU-1"), period=0.001) as sampler:
        time.sleep(0.05)
    n = len(sampler.samples)
    time.sleep(0.02)
    assert n >= 2 and len(sampler.samples) == n  # stopped with the block
    assert all(s == (1755, 0x4) for s in sampler.samples) and sampler.error is None


def test_launches_cover_the_seconds_in_whole_bursts(probe):
    assert probe.launches_for(0.4, 5.0) == 12501  # 5 s of 0.4 ms launches, +1
    assert probe.launches_for(0.4, 5.0, burst=20) == 12520  # rounded up to whole bursts
    assert probe.launches_for(50.0, 0.1, minimum=100) == 100  # the minimum wins
    assert probe.launches_for(0.0, 1.0) > 1000  # a zero estimate does not divide by zero


@pytest.mark.parametrize("bad", [["--seconds", "0"], ["--rounds", "0"], ["--burst", "0"], ["--gap-ms", "-1"]])
def test_bad_arguments_exit_before_any_gpu_work(probe, monkeypatch, capsys, bad):
    monkeypatch.setattr("sys.argv", ["energy_probe.py", *bad])
    with pytest.raises(SystemExit) as exc:
        probe.main()
    assert exc.value.code == 2 and "must be" in capsys.readouterr().err
