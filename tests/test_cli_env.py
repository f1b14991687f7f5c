"""`vitbench env` and the CLI's user-error handling."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vitbench._backend import INTERPRETER, INTERPRETER_NOTE
from vitbench.cli import app

runner = CliRunner()


def test_env_json_has_device_and_versions():
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert set(info["versions"]) == {"python", "torch", "triton", "transformers", "vitbench"}
    assert info["device"]["backend"] == ("interpreter" if INTERPRETER else "cuda")
    if INTERPRETER:
        assert info["note"] == INTERPRETER_NOTE
    else:
        assert info["device"]["sm_count"] > 0


def test_env_records_vitbench_settings(monkeypatch):
    monkeypatch.setenv("VITBENCH_MATMUL", "tma")
    monkeypatch.setenv("VITBENCH_DEBUG", "1")
    info = json.loads(runner.invoke(app, ["env", "--json"]).output)
    assert info["settings"] == {"VITBENCH_MATMUL": "tma"}


def test_env_table_says_interpreter_on_cpu():
    result = runner.invoke(app, ["env"], terminal_width=200)
    assert result.exit_code == 0
    assert "triton" in result.output
    if INTERPRETER:
        assert "interpreter" in result.output


def _vitbench(*args, **env):
    return subprocess.run([sys.executable, "-m", "vitbench", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_user_error_is_one_line_and_exit_2():
    proc = _vitbench("report", "/nonexistent/results-dir-xyz")
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_variable_shows_traceback():
    proc = _vitbench("report", "/nonexistent/results-dir-xyz", VITBENCH_DEBUG="1")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "VitbenchError" in proc.stderr


def test_interpreter_is_selected_before_kernels_without_gpu():
    code = "import vitbench, os; print(vitbench.BACKEND, os.environ.get('TRITON_INTERPRET'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    backend, flag = out.stdout.split()
    assert backend == ("interpreter" if INTERPRETER else "cuda")
    if INTERPRETER:
        assert flag == "1"


@pytest.mark.parametrize("name,value", [("VITBENCH_MATMUL", "fastest"),
                                        ("VITBENCH_TUNE_GRAPH_BELOW_MS", "fast"),
                                        ("VITBENCH_PDL", "yes"),
                                        ("VITBENCH_TMA_MIN_ROWS", "-5"),
                                        ("VITBENCH_SPLIT_K", "on"),
                                        ("VITBENCH_TUNE_COLD", "true"),
                                        ("VITBENCH_LN_FOLD", "yes"),
                                        ("VITBENCH_ATTN_TAIL", "off"),
                                        ("VITBENCH_TAIL_SPLIT", "yes"),
                                        ("VITBENCH_ROW_SPLIT", "on"),
                                        ("VITBENCH_FAST_GELU", "yes"),
                                        ("VITBENCH_FMA", "2"),
                                        ("VITBENCH_FMA_SPLIT_K", "on"),
                                        ("VITBENCH_TF32_TMA", "yes")])
def test_bad_setting_is_one_line_before_any_work(name, value):
    env = {**os.environ, name: value}
    proc = subprocess.run([sys.executable, "-m", "vitbench", "env"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{name}='{value}'" in lines[0], proc.stderr


@pytest.mark.parametrize("module,setting,name,default", [
    ("vitbench.kernels.matmul_fma", "fma_setting", "VITBENCH_FMA", True),
    ("vitbench.kernels.matmul_fma_splitk", "fma_split_k_setting", "VITBENCH_FMA_SPLIT_K", True),
    ("vitbench.kernels.matmul_tma", "tf32_tma_setting", "VITBENCH_TF32_TMA", True),
])
def test_on_off_settings(monkeypatch, module, setting, name, default):
    """An on/off switch: its default when unset, 0 and 1, and any other value a user error that
    names the variable and the value."""
    import importlib

    from vitbench.errors import VitbenchError

    read = getattr(importlib.import_module(module), setting)
    monkeypatch.delenv(name, raising=False)
    assert read() is default
    for value, want in (("0", False), ("1", True)):
        monkeypatch.setenv(name, value)
        assert read() is want
    monkeypatch.setenv(name, "on")
    with pytest.raises(VitbenchError, match=f"{name}='on'"):
        read()


def _fake_gpu(monkeypatch, **props):
    """envinfo on a pretend GPU: torch.cuda answers with `props` (no driver is asked)."""
    from types import SimpleNamespace

    from vitbench import envinfo

    base = dict(name="NVIDIA H100 80GB HBM3", multi_processor_count=132, total_memory=80 * 2**30,
                major=9, minor=0)
    monkeypatch.setattr(envinfo, "HAS_CUDA", True)
    monkeypatch.setattr(envinfo, "BACKEND", "cuda")
    monkeypatch.setattr(envinfo.torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(envinfo.torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(**base, **props))
    monkeypatch.setattr(envinfo, "_driver_version", lambda: "580.159.04")
    return envinfo


def test_device_info_names_the_physical_gpu(monkeypatch):
    """Side-by-side runs on one host differ by a few percent: the record says which GPU ran."""
    envinfo = _fake_gpu(monkeypatch, uuid="5d8a-1234", pci_domain_id=0, pci_bus_id=0x1B, pci_device_id=0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    info = envinfo.device_info()
    # as nvidia-smi -L and nvidia-smi --query-gpu=pci.bus_id print them
    assert (info.uuid, info.pci_bus, info.visible_devices) == ("GPU-5d8a-1234", "00000000:1B:00.0", "3")
    assert info.sm_count == 132 and info.compute_capability == "9.0"


def test_device_info_without_pci_or_uuid_attributes(monkeypatch):
    envinfo = _fake_gpu(monkeypatch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    info = envinfo.device_info()
    assert (info.uuid, info.pci_bus, info.visible_devices) == (None, None, None)
