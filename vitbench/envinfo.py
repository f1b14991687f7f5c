"""What machine and software a run is on: the device and library versions."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version

import torch

from vitbench._backend import BACKEND, HAS_CUDA, INTERPRETER_NOTE


@dataclass(frozen=True)
class DeviceInfo:
    backend: str  # "cuda" or "interpreter"
    name: str  # GPU name, or "cpu (Triton interpreter)"
    sm_count: int | None
    memory_gib: float | None
    compute_capability: str | None
    driver: str | None
    cuda: str | None
    # Which physical GPU of the host (runs side by side on one host differ by a few percent):
    uuid: str | None = None  # "GPU-<uuid>", as nvidia-smi -L prints it
    pci_bus: str | None = None  # domain:bus:device.function, as nvidia-smi prints it
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES, when set


def _pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )
        return out.stdout.strip().splitlines()[0] or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _gpu_uuid(raw: object) -> str | None:
    """torch's device uuid as nvidia-smi names it ("GPU-" + the uuid)."""
    if not raw:
        return None
    text = str(raw)
    return text if text.startswith("GPU-") else "GPU-" + text


def device_info() -> DeviceInfo:
    if not HAS_CUDA or BACKEND == "interpreter":
        return DeviceInfo(BACKEND, "cpu (Triton interpreter)", None, None, None, None, None)
    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    try:  # attributes of newer torch builds; a record, never a reason to fail
        pci = f"{int(p.pci_domain_id):08X}:{int(p.pci_bus_id):02X}:{int(p.pci_device_id):02X}.0"
    except (AttributeError, TypeError, ValueError):
        pci = None
    return DeviceInfo(
        backend=BACKEND,
        name=p.name,
        sm_count=p.multi_processor_count,
        memory_gib=round(p.total_memory / 2**30, 1),
        compute_capability=f"{p.major}.{p.minor}",
        driver=_driver_version(),
        cuda=torch.version.cuda,
        uuid=_gpu_uuid(getattr(p, "uuid", None)),
        pci_bus=pci,
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )


def versions() -> dict[str, str | None]:
    import vitbench

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _pkg_version("triton"),
        "transformers": _pkg_version("transformers"),
        "vitbench": vitbench.__version__,
    }


def settings() -> dict[str, str]:
    """VITBENCH_* variables that change what runs (e.g. VITBENCH_MATMUL=pointer), for the record."""
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith("VITBENCH_") and k not in ("VITBENCH_DEBUG", "VITBENCH_GIT_COMMIT")}


def environment() -> dict:
    """Device, versions and settings as one dict (used by `vitbench env` and run metadata)."""
    info = asdict(device_info())
    return {"device": info, "versions": versions(), "settings": settings(),
            "note": INTERPRETER_NOTE if info["backend"] == "interpreter" else None}
