"""Programmatic dependent launch (VITBENCH_PDL=1, kernels/_pdl.py): the setting, what every kernel
compiles to for sm_90 with and without it (offline, no GPU needed), and on a GPU the same results
with it as without, eagerly and replayed from a CUDA graph."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from vitbench.errors import VitbenchError
from vitbench.kernels import _pdl
from vitbench.numerics import rel_err, tolerance


@pytest.mark.parametrize("raw,expect", [("", False), ("0", False), ("1", True), (" 1 ", True)])
def test_setting(monkeypatch, raw, expect):
    monkeypatch.setenv("VITBENCH_PDL", raw)
    assert _pdl.pdl_setting() is expect


@pytest.mark.parametrize("raw", ["yes", "2", "true"])
def test_bad_setting_is_a_user_error(monkeypatch, raw):
    monkeypatch.setenv("VITBENCH_PDL", raw)
    with pytest.raises(VitbenchError, match="VITBENCH_PDL"):
        _pdl.pdl_setting()


def test_launch_options(monkeypatch):
    monkeypatch.setattr(_pdl, "PDL", False)
    assert _pdl.launch_opts() == {"PDL": False}
    monkeypatch.setattr(_pdl, "PDL", True)
    assert _pdl.launch_opts() == {"PDL": True, "launch_pdl": True}


_COMPILE = textwrap.dedent("""
    import os
    os.environ["TRITON_INTERPRET"] = "0"  # compile for a GPU target, no GPU needed
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import vitbench  # noqa: F401
    from vitbench.kernels.add import _add_kernel as fn
    for pdl in (False, True):
        consts = {"BLOCK": 1024, "BROADCAST": False, "VEC": 8, "INT64": False, "PDL": pdl}
        sig = {n: "constexpr" if n in consts else "*fp16" if n.endswith("_ptr") else "i32"
               for n in fn.arg_names}
        k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts),
                           target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        ptx = k.asm["ptx"]
        print(pdl, ptx.count("griddepcontrol.wait"), ptx.count("griddepcontrol.launch_dependents"))
""")


def test_kernel_compiles_with_and_without_grid_dependency_control():
    proc = subprocess.run([sys.executable, "-c", _COMPILE], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TRITON_INTERPRET": "0"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "0", "0", "True", "1", "1"], proc.stdout


@pytest.mark.gpu
def test_gpu_same_results_with_pdl(monkeypatch):
    """layernorm -> matmul (+GELU) -> matmul (+residual, in place) -> add, eagerly and from a CUDA
    graph, with PDL on: each result within tolerance of float32 torch (and of PDL off)."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("programmatic dependent launch needs compute capability >= 9")
    from vitbench.kernels import add, layernorm, matmul

    torch.manual_seed(0)
    dt, dev = torch.bfloat16, "cuda"
    x = torch.randn(8, 197, 768, device=dev, dtype=dt)
    w1 = torch.randn(3072, 768, device=dev, dtype=dt) / 768 ** 0.5
    w2 = torch.randn(768, 3072, device=dev, dtype=dt) / 3072 ** 0.5
    g, b = torch.rand(768, device=dev, dtype=dt) + 0.5, torch.randn(768, device=dev, dtype=dt)

    def forward():
        h = layernorm(x, g, b, eps=1e-6)
        u = matmul(h, w1, None, epilogue="gelu")
        r = x.clone()
        matmul(u, w2, None, epilogue="residual", residual=r, out=r)
        return add(r, x)

    f = lambda t: t.float()  # noqa: E731
    h = torch.nn.functional.layer_norm(f(x), (768,), f(g), f(b), eps=1e-6)
    ref = torch.nn.functional.gelu(h @ f(w1).T) @ f(w2).T + f(x) + f(x)
    results = {}
    for pdl in (False, True):
        monkeypatch.setattr(_pdl, "PDL", pdl)
        eager = forward()  # also autotunes
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static = forward()
        graph.replay()
        torch.cuda.synchronize()
        for name, out in (("eager", eager), ("graph", static)):
            assert rel_err(out, ref) < tolerance(dt), (pdl, name)
        results[pdl] = static.float()
    assert rel_err(results[True], results[False]) < tolerance(dt)
