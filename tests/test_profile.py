"""`vitbench profile`: per-kernel table of one Triton ViT forward (interpreter: vit-tiny-test)."""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import vitbench.kernels as K
from vitbench.bench import profile as P
from vitbench.cli import app
from vitbench.model import modules
from vitbench.model.configs import hf_config, spec_from_hf_config

MODEL, BATCH = "vit-tiny-test", 2


def _profile(out, *extra):
    result = CliRunner().invoke(app, ["profile", "--model", MODEL, "--batch", str(BATCH),
                                      "--dtype", "fp32", "--out", str(out), *extra], terminal_width=200)
    assert result.exit_code == 0, result.output
    with open(out / f"profile-{MODEL}-b{BATCH}-fp32.csv", newline="") as f:
        rows = {r["kernel"]: r for r in csv.DictReader(f)}
    return result.output, rows, out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _profile(tmp_path_factory.mktemp("profile"), "--no-cls-only")  # the full forward


def test_default_profiles_the_logits_only_forward_the_model_suite_times(run, tmp_path):
    # Same launches; the last layer past attention and the final layernorm cover the CLS rows only.
    output, rows, _ = _profile(tmp_path)
    full = run[1]
    assert "logits only" in output
    for k in ("_matmul_kernel", "_attention_kernel", "_layernorm_kernel", "_patch_embed_kernel"):
        assert rows[k]["calls"] == full[k]["calls"], k
    for k in ("_matmul_kernel", "_attention_kernel", "_layernorm_kernel"):
        assert int(rows[k]["flops"]) < int(full[k]["flops"]), k
    assert rows["_patch_embed_kernel"]["flops"] == full["_patch_embed_kernel"]["flops"]


def test_precision_profile_is_written_beside_the_exact_one(run):
    # a bf16x6 profile gets its own file name: it does not overwrite the ieee one
    _, _, out = run
    result = CliRunner().invoke(app, ["profile", "--model", MODEL, "--batch", str(BATCH), "--dtype",
                                      "fp32", "--precision", "bf16x6", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (out / f"profile-{MODEL}-b{BATCH}-fp32-bf16x6.csv").is_file()
    assert (out / f"profile-{MODEL}-b{BATCH}-fp32-bf16x6.trace.json").is_file()
    assert (out / f"profile-{MODEL}-b{BATCH}-fp32.csv").is_file()


def test_table_has_the_triton_kernels_with_the_models_launch_counts(run):
    output, rows, _ = run
    spec = spec_from_hf_config(hf_config(MODEL), head=True)  # random weights carry a head
    L = spec.layers
    expected = {"_matmul_kernel": 4 * L + 1,  # QKV, out-proj, FC1, FC2 per layer + classifier
                "_attention_kernel": L, "_layernorm_kernel": 2 * L + 1, "_patch_embed_kernel": 1}
    for kernel, calls in expected.items():
        assert int(rows[kernel]["calls"]) == calls, kernel
        assert kernel in output
    assert "NOT representative" in output  # interpreter: labelled
    # FLOPs come from the kernels' cost functions; the dot-product kernels' sum is the model's own
    # FLOP count (which leaves layernorm out).
    dots = ("_matmul_kernel", "_attention_kernel", "_patch_embed_kernel")
    assert sum(int(rows[k]["flops"]) for k in dots) == spec.flops(BATCH)
    for k in expected:
        r = rows[k]
        assert float(r["total_us"]) > 0 and float(r["tflops"]) > 0 and float(r["gbps"]) > 0
        assert float(r["mean_us"]) == pytest.approx(float(r["total_us"]) / int(r["calls"]), rel=1e-3)


def test_percentages_sum_to_100_and_total_row_adds_up(run):
    _, rows, _ = run
    body = [r for k, r in rows.items() if k != "total"]
    assert sum(float(r["pct"]) for r in body) == pytest.approx(100.0, abs=0.1)
    total = rows["total"]
    assert float(total["total_us"]) == pytest.approx(sum(float(r["total_us"]) for r in body), rel=1e-3)
    assert int(total["calls"]) == sum(int(r["calls"]) for r in body)
    assert total["activity"] == "cpu" and total["model"] == MODEL and total["batch"] == str(BATCH)


def test_trace_is_chrome_json_with_the_kernel_ranges(run):
    _, _, out = run
    with open(out / f"profile-{MODEL}-b{BATCH}-fp32.trace.json") as f:
        trace = json.load(f)
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"_matmul_kernel", "_attention_kernel", P.FORWARD_RANGE} <= names


def test_launchers_are_restored_and_kernel_names_exist(run):
    assert modules.matmul is K.matmul and modules.attention is K.attention
    assert modules.layernorm is K.layernorm and modules.patch_embed is K.patch_embed
    for launcher, (kernel, _) in P.LAUNCHERS.items():
        # Exported launchers name their module; the nested ones are listed with theirs.
        where = getattr(K, launcher).__module__ if launcher in K.__all__ else P.NESTED[launcher]
        assert hasattr(importlib.import_module(where), kernel), (launcher, kernel)
    assert P.LAUNCHERS["matmul_gluon"][0] == importlib.import_module("vitbench.kernels.matmul_gluon").KERNEL_NAME
    assert P.LAUNCHERS["matmul_fma"][0] == importlib.import_module("vitbench.kernels.matmul_fma").KERNEL_NAME


def test_group_attaches_costs_by_kernel_name():
    launches = [P.Launch("_matmul_kernel", 100, 10), P.Launch("_matmul_tma_kernel", 50, 5)]
    rows = P._group([("_matmul_tma_kernel", 3.0), ("_matmul_kernel", 1.0), ("memcpy", 4.0)],
                    launches)
    by_name = {r.kernel: r for r in rows}
    tma, ptr, copy = by_name["_matmul_tma_kernel"], by_name["_matmul_kernel"], by_name["memcpy"]
    assert (tma.calls, tma.total_us, tma.flops, tma.bytes) == (1, 3.0, 50, 5)
    assert (ptr.flops, ptr.bytes) == (100, 10)
    assert tma.pct == pytest.approx(37.5) and copy.flops is None and copy.tflops is None
    assert tma.tflops == pytest.approx(50 / 3.0 * 1e-6)


def test_matmul_sent_to_the_tma_kernel_counts_as_that_kernel_once(monkeypatch):
    # The GPU profile of 2026-11-27 (auto choice: 37 TMA + 12 pointer GEMMs at batch 256) gave all
    # 49 GEMMs' FLOPs to the pointer kernel's row. Here: every eligible GEMM forced to TMA.
    import torch

    from vitbench.model import checkpoints
    from vitbench.model.modules import TritonViT

    matmul_mod = importlib.import_module("vitbench.kernels.matmul")
    ckpt = checkpoints.random_weights(hf_config(MODEL), seed=0, head=True)
    vit = TritonViT(ckpt.spec, ckpt.local).half()
    x = torch.rand(1, ckpt.spec.channels, ckpt.spec.image_h, ckpt.spec.image_w).half()
    counts = {}
    for mode in ("pointer", "tma"):
        monkeypatch.setattr(matmul_mod, "MODE", mode)
        launches: list[P.Launch] = []
        with P.instrumented(modules, launches):
            vit(x)
        counts[mode] = launches
    kinds = {m: {k: sum(1 for x in ls if x.kernel == k) for k in {x.kernel for x in ls}}
             for m, ls in counts.items()}
    L = ckpt.spec.layers
    assert kinds["pointer"].get("_matmul_tma_kernel", 0) == 0
    assert kinds["tma"]["_matmul_tma_kernel"] >= 4 * L  # every layer GEMM is eligible here
    gemms = lambda ls: [x for x in ls if "matmul" in x.kernel]  # noqa: E731
    assert len(gemms(counts["tma"])) == len(gemms(counts["pointer"])) == 4 * L + 1  # no double count
    assert sum(x.flops for x in gemms(counts["tma"])) == sum(x.flops for x in gemms(counts["pointer"]))
    assert importlib.import_module("vitbench.kernels.matmul_tma").matmul_tma.__module__ == \
        "vitbench.kernels.matmul_tma"  # restored


def test_row_split_gemms_count_as_two_launches_with_their_rows_cost(monkeypatch):
    # A row-split GEMM (kernels/_rowsplit.py) launches its kernel twice: both launches counted,
    # each with its rows' FLOPs, which add up to the unsplit GEMM's; likewise when the second
    # launch is the two-pass split-K (counted as its partial-product kernel).
    import torch

    from vitbench.kernels import _rowsplit, matmul_splitk
    from vitbench.model import checkpoints
    from vitbench.model.modules import TritonViT

    ckpt = checkpoints.random_weights(hf_config(MODEL), seed=0, head=True)
    vit = TritonViT(ckpt.spec, ckpt.local).half()
    x = torch.rand(2, ckpt.spec.channels, ckpt.spec.image_h, ckpt.spec.image_w).half()
    gemms = ("_matmul_kernel", "_splitk_partial_kernel")
    counts = {}
    for mode in ("whole", "split", "two-pass"):
        monkeypatch.setattr(_rowsplit, "choose", lambda gemm, a, *args, **kw: (
            8 if mode != "whole" and a.numel() // a.shape[-1] > 8 else None))
        monkeypatch.setattr(matmul_splitk, "choose", lambda *args: (
            matmul_splitk.TwoPass(16, 32, 16, 2, 4, 2) if mode == "two-pass" else None))
        launches: list[P.Launch] = []
        with P.instrumented(modules, launches):
            vit(x)
        counts[mode] = [x for x in launches if x.kernel in gemms]
    whole, split, two = counts["whole"], counts["split"], counts["two-pass"]
    assert len(split) > len(whole) and len(two) == len(split)
    assert {x.kernel for x in two} == set(gemms) and {x.kernel for x in split} == {gemms[0]}
    assert sum(x.flops for x in split) == sum(x.flops for x in whole) == sum(x.flops for x in two)
    assert sum(x.bytes for x in split) > sum(x.bytes for x in whole)  # W is read by both launches
    assert sum(x.bytes for x in two) > sum(x.bytes for x in split)  # + the two-pass workspace
    assert importlib.import_module("vitbench.kernels.matmul")._matmul_pointer.__module__ == \
        "vitbench.kernels.matmul"  # restored
    assert matmul_splitk.matmul_splitk.__module__ == "vitbench.kernels.matmul_splitk"


@pytest.mark.parametrize("args, word", [
    (["--model", "vit-nope"], "vit-nope"),
    (["--batch", "0"], "--batch"),
    (["--dtype", "fp64"], "fp64"),
])
def test_bad_input_is_one_line_exit_2(args, word):
    proc = subprocess.run([sys.executable, "-m", "vitbench", "profile", *args], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and word in lines[0], proc.stderr


@pytest.mark.gpu
def test_gpu_profile_vit_base_cuda_kernels(tmp_path):
    res = P.profile_model(model="vit-base-patch16-224", batch=8, dtype="bf16", out_dir=tmp_path)
    assert res.activity == "cuda" and res.representative
    spec = spec_from_hf_config(hf_config("vit-base-patch16-224"), head=True)
    rows = {r.kernel: r for r in res.rows}
    names = ("_matmul_kernel", "_matmul_tma_kernel", "_splitk_partial_kernel")
    gemm = [r for k, r in rows.items() if k in names]
    # 4 GEMMs per layer (the CLS-only last layer's FC1 and FC2 included) and the head; a row-split
    # GEMM (kernels/_rowsplit.py, timed per process) launches twice, so count what was launched:
    # each kernel's profiled calls are the launches the launchers recorded for it
    launched = res.launch_counts()
    assert all(r.calls == launched.get(r.kernel, 0) for r in gemm), (launched, gemm)
    assert 4 * spec.layers + 1 <= sum(r.calls for r in gemm) <= 2 * (4 * spec.layers + 1)
    if "_splitk_partial_kernel" in rows:  # the two-pass split-K: one sum per partial launch
        assert rows["_splitk_sum_kernel"].calls == rows["_splitk_partial_kernel"].calls
    assert rows["_attention_kernel"].calls == spec.layers
    assert all(r.tflops and 1 < r.tflops < 1000 for r in gemm)  # above any H100 peak: misattributed
    assert not [n for n in res.notes if "profile shows" in n], res.notes
    assert json.loads(res.trace.read_text())["traceEvents"]
