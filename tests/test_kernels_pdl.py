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


def test_older_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(_pdl, "PDL", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(_pdl, "_capability", lambda index: (8, 0))
    with pytest.raises(VitbenchError, match="compute capability 9.0"):
        _pdl.launch_opts()
    monkeypatch.setattr(_pdl, "_capability", lambda index: (9, 0))
    assert _pdl.launch_opts()["launch_pdl"] is True


@pytest.mark.gpu
def test_gpu_same_results_with_pdl(monkeypatch):
    """A layer's kernels at ViT-B/16 batch 32 (layernorm, QKV and FC1/FC2 GEMMs as auto picks them,
    attention, in-place residual, add), eagerly and replayed from a CUDA graph: PDL on first (so
    autotuning and the GEMM choice run with it), then off with the same configs. The results must
    be bit-identical, and within tolerance of float32 torch."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("programmatic dependent launch needs compute capability >= 9")
    import importlib

    from vitbench.kernels import add, attention, layernorm, matmul

    # the default GEMM choice even when the GPU test set runs with VITBENCH_MATMUL=pointer
    monkeypatch.setattr(importlib.import_module("vitbench.kernels.matmul"), "MODE", "auto")
    torch.manual_seed(0)
    dt, dev, B, T, D, H = torch.bfloat16, "cuda", 32, 197, 768, 12
    x = torch.randn(B, T, D, device=dev, dtype=dt)
    wqkv = torch.randn(3 * D, D, device=dev, dtype=dt) / D ** 0.5
    w1 = torch.randn(4 * D, D, device=dev, dtype=dt) / D ** 0.5
    w2 = torch.randn(D, 4 * D, device=dev, dtype=dt) / (4 * D) ** 0.5
    g, b = torch.rand(D, device=dev, dtype=dt) + 0.5, torch.randn(D, device=dev, dtype=dt)

    def forward():
        qkv = matmul(layernorm(x, g, b, eps=1e-6), wqkv, None)  # [B, T, 3D]
        q, k, v = qkv.view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4).unbind(0)
        ctx = attention(q, k, v, scale=(D // H) ** -0.5)  # [B, H, T, d]
        r = x + ctx.transpose(1, 2).reshape(B, T, D)  # torch ops between ours: fully serialised
        u = matmul(layernorm(r, g, b, eps=1e-6), w1, None, epilogue="gelu")
        matmul(u, w2, None, epilogue="residual", residual=r, out=r)
        return add(r, x)

    f = lambda t: t.float()  # noqa: E731
    qkv = torch.nn.functional.layer_norm(f(x), (D,), f(g), f(b), eps=1e-6) @ f(wqkv).T
    q, k, v = qkv.view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4).unbind(0)
    ctx = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    r = f(x) + ctx.transpose(1, 2).reshape(B, T, D)
    h = torch.nn.functional.layer_norm(r, (D,), f(g), f(b), eps=1e-6)
    ref = r + torch.nn.functional.gelu(h @ f(w1).T) @ f(w2).T + f(x)
    results = {}
    for pdl in (True, False):
        monkeypatch.setattr(_pdl, "PDL", pdl)
        eager = forward()  # with PDL on: also autotunes and picks each GEMM's kernel
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static = forward()
        graph.replay()
        torch.cuda.synchronize()
        for name, out in (("eager", eager), ("graph", static)):
            assert rel_err(out, ref) < tolerance(dt), (pdl, name, rel_err(out, ref))
        results[pdl] = (eager.clone(), static.clone())
    assert torch.equal(results[True][0], results[False][0])
    assert torch.equal(results[True][1], results[False][1])
