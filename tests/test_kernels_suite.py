"""The kernel suite end to end through the CLI (interpreter), its plans, and bad input."""

import csv
import json
import sys

import pytest

from vitbench._backend import HAS_CUDA, INTERPRETER
from vitbench.bench.metadata import config_hash
from vitbench.bench.schema import COLUMNS, META_KEYS, ROW_KEY
from vitbench.cli import main
from vitbench.errors import VitbenchError
from vitbench.kernels.add import add_cost
from vitbench.suites.kernels import device_slug, plan_kernels

ON_GPU = HAS_CUDA and not INTERPRETER


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["vitbench", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def test_add_quick_end_to_end(tmp_path, monkeypatch, capsys):
    out = tmp_path / "res"
    code, _, err = run_cli(monkeypatch, capsys, "kernels", "--op", "add", "--quick", "--out",
                           str(out), "--no-progress")
    assert code in (0, None), err
    csvs = list(out.glob("kernels-*.csv"))
    assert len(csvs) == 1
    rows = read_csv(csvs[0])
    # add.yaml quick: 3 shapes; interpreter: fp32 only, providers triton + torch.
    assert len(rows) == 3 * 2
    assert {r["provider"] for r in rows} == {"triton", "torch"}
    if not ON_GPU:
        assert "timings not representative" in err
        assert all(r["backend"] == "interpreter" and r["timer"] == "host" for r in rows)
    for r in rows:
        assert r["ok"] == "true", r
        assert float(r["max_rel_err"]) < 1e-5
        assert float(r["median_ms"]) > 0 and int(r["n"]) >= 2
        assert float(r["p10_ms"]) <= float(r["median_ms"]) <= float(r["p90_ms"])
        assert r["baseline"] == "torch" and r["error"] == ""
        shape = dict(kv.split("=") for kv in r["shape"].split(";"))
        B, T, D = int(shape["B"]), int(shape["T"]), int(shape["D"])
        n_y = T * D if r["case"] == "pos" else B * T * D
        assert (int(r["flops"]), int(r["bytes"])) == add_cost(B * T * D, n_y, 4)
    by_key = {(r["case"], r["shape"], r["provider"]): r for r in rows}
    for (case, shape, prov), r in by_key.items():
        base = by_key[(case, shape, "torch")]
        expect = float(base["median_ms"]) / float(r["median_ms"])
        assert float(r["speedup_vs_baseline"]) == pytest.approx(expect, rel=1e-4)

    meta = json.loads((out / (csvs[0].stem + ".meta.json")).read_text())
    assert set(META_KEYS) <= set(meta)
    assert meta["finished"] is not None and meta["run_id"] == rows[0]["run_id"]
    assert meta["config_hash"] == config_hash(meta["config"]) == rows[0]["config_hash"]
    if not ON_GPU:
        assert meta["peaks"]["copy_gbps"] is None and meta["backend"] == "interpreter"
    samples = [json.loads(line) for line in (out / (csvs[0].stem + ".samples.jsonl")).open()]
    assert len(samples) == len(rows)
    n_by_key = {tuple(r[k] for k in ROW_KEY): int(r["n"]) for r in rows}
    for s in samples:
        assert len(s["samples_ms"]) == n_by_key[tuple(s["key"])]


def test_resume_from_the_cli_completes_a_cut_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "res"
    args = ("kernels", "--op", "add", "--quick", "--out", str(out), "--no-progress")
    assert run_cli(monkeypatch, capsys, *args)[0] in (0, None)
    path = next(out.glob("kernels-*.csv"))
    lines = path.read_text().splitlines(keepends=True)
    # Keep the header and two rows, plus half of the third row (a kill mid-write).
    path.write_text("".join(lines[:3]) + lines[3][:25])
    code, _, err = run_cli(monkeypatch, capsys, *args, "--resume")
    assert code in (0, None), err
    assert list(out.glob("kernels-*.csv")) == [path]
    rows = read_csv(path)
    keys = [tuple(r[k] for k in ROW_KEY) for r in rows]
    assert len(rows) == 6 and len(set(keys)) == 6
    assert all(r["ok"] == "true" for r in rows)


BAD_INPUTS = [
    (("--op", "nope"), "nope"),
    (("--op", "add", "--providers", "triton,jax"), "jax"),
    (("--op", "add", "--dtype", "fp8"), "fp8"),
    (("--op", "add", "--timer", "tepid"), "tepid"),
    ((), "--op"),
]


@pytest.mark.parametrize("args,needle", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, needle):
    code, _, err = run_cli(monkeypatch, capsys, "kernels", *args, "--out", str(tmp_path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error:") and needle in err
    assert not list(tmp_path.glob("*.csv"))


@pytest.mark.parametrize("text,needle", [
    ("cases: [\n  - op: add\n", "malformed YAML"),
    ("cases:\n  - op: add\n    label: x\n    shape: {T: -3, D: 4}\n", "shape"),
    ("cases:\n  - op: addd\n    label: x\n    shape: {T: 3, D: 4}\n", "addd"),
    ("cases:\n  - op: matmul\n    label: x\n    shape: {M: 8, N: 8, K: 8}\n    options: {tf32_operands: 1}\n",
     "tf32_operands"),
])
def test_bad_config_exits_2(tmp_path, monkeypatch, capsys, text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, _, err = run_cli(monkeypatch, capsys, "kernels", "--config", str(cfg), "--out",
                           str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(cfg) in err and needle in err


@pytest.mark.skipif(ON_GPU, reason="device timers work on a GPU")
def test_device_timer_without_gpu_is_a_user_error(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "kernels", "--op", "add", "--quick",
                           "--timer", "cold", "--out", str(tmp_path))
    assert code == 2 and "needs a CUDA GPU" in err


def test_plan_matmul_precisions_and_providers():
    plan = plan_kernels("matmul", dtype="fp32,bf16")
    fp32 = {c.precision for c in plan.cases if c.dtype == "fp32"}
    bf16 = {c.precision for c in plan.cases if c.dtype == "bf16"}
    assert fp32 == {"ieee", "tf32"} and bf16 == {""}
    assert len(plan.cases) == 9 * 3  # 9 square sizes x (fp32 ieee, fp32 tf32, bf16)
    assert plan.config["files"] and plan.config["dtypes"] == ["fp32", "bf16"]
    names = [p.name for p in plan.providers]
    if not ON_GPU:
        assert names == ["triton", "torch"] and any("torch-compile" in n for n in plan.notes)
    else:
        assert names == ["triton", "torch", "torch-compile"]
    assert [p.name for p in plan.providers if p.is_baseline] == ["torch"]


def test_plan_precision_override():
    # --precision replaces the file's fp32 precisions for ops with matrix products only
    plan = plan_kernels("matmul,add", dtype="fp32", precision="bf16x6,tf32x3", quick=True)
    mm = {c.precision for c in plan.cases if c.op == "matmul"}
    add = {c.precision for c in plan.cases if c.op == "add"}
    assert mm == {"bf16x6", "tf32x3"} and add == {""}
    with pytest.raises(VitbenchError, match="--precision"):
        plan_kernels("matmul", dtype="fp32", precision="bf16x9")
    assert plan.config["precisions"] == ["bf16x6", "tf32x3"]  # in the run's metadata
    # no fp32 dots: said, not silently ignored
    plan = plan_kernels("matmul", dtype="bf16", precision="bf16x6", quick=True)
    assert any("applies to fp32 rows" in n for n in plan.notes)


def test_plan_op_filter_with_config_file():
    from vitbench.suites.kernels import configs_dir

    plan = plan_kernels("attention", config=configs_dir() / "kernels" / "vit.yaml")
    assert {c.op for c in plan.cases} == {"attention"}
    assert sorted({c.batch for c in plan.cases}) == [1, 8, 32, 128, 256]


def test_vit_set_matches_the_anchor_arithmetic():
    plan = plan_kernels("vit", dtype="bf16")
    assert len(plan.cases) == 2 * 12 * 5
    at = {(c.case, c.batch): c for c in plan.cases}
    # ViT-B/16 at batch 1: 12 layers of linears + fused attention, plus the patch embedding.
    per_layer = sum(at[(f"b16-{k}", 1)].flops for k in ("qkv", "proj", "fc1", "fc2", "attn"))
    total = 12 * per_layer + at[("b16-patch", 1)].flops
    assert total / 1e9 == pytest.approx(35.1, abs=0.05)  # ANCHORS.md: 35.1 GFLOP per image
    assert at[("b16-attn", 1)].flops == pytest.approx(
        at[("b16-scores", 1)].flops + at[("b16-pv", 1)].flops)
    l_fc1 = at[("l16-fc1", 256)]
    assert l_fc1.shape == {"B": 256, "T": 197, "N": 4096, "K": 1024}
    assert l_fc1.options == {"epilogue": "gelu"}
    assert at[("l16-attn", 8)].shape == {"B": 8, "H": 16, "T": 197, "d": 64}
    assert at[("b16-patch", 32)].shape == {"B": 32, "C": 3, "S": 224, "P": 16, "D": 768}


def test_quick_sets_are_small():
    plan = plan_kernels("all", quick=True)
    assert {c.op for c in plan.cases} == {"add", "layernorm", "softmax", "matmul", "bmm",
                                          "patch_embed", "attention"}
    for c in plan.cases:  # interpreter-sized: a few MFLOP, under a MB of traffic
        assert c.flops < 1e7 and c.bytes < 1e6, c.shape_str


@pytest.mark.parametrize("name,slug", [
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA H100 PCIe", "h100"),
    ("NVIDIA H200", "h200"),
])
def test_device_slug(name, slug):
    assert device_slug(name) == slug


def test_every_op_passes_the_gate_against_its_reference(tmp_path):
    """One quick case per op through the whole engine: triton and torch agree with float64."""
    from vitbench.suites.kernels import run_kernels

    plan = plan_kernels("all", quick=True, providers="triton,torch")
    first = {}
    for c in plan.cases:
        first.setdefault(c.op, c)
    plan.cases = list(first.values())
    res = run_kernels(plan, out_dir=tmp_path, progress=False)
    assert len(res.rows) == 7 * 2
    bad = [(r["op"], r["provider"], r["max_rel_err"], r["error"]) for r in res.rows if not r["ok"]]
    assert not bad


def test_torch_compile_provider_records_compile_time(tmp_path):
    from vitbench.suites.kernels import run_kernels

    plan = plan_kernels("add", quick=True, providers="torch,torch-compile")
    plan.cases = plan.cases[:1]
    res = run_kernels(plan, out_dir=tmp_path, progress=False)
    rows = {r["provider"]: r for r in res.rows}
    assert rows["torch-compile"]["ok"], rows["torch-compile"]["error"]
    assert rows["torch-compile"]["compile_s"] > rows["torch"]["compile_s"]
    assert rows["torch-compile"]["speedup_vs_baseline"] > 0


def test_quick_without_a_quick_list_takes_two_shapes_per_set(tmp_path):
    cfg = tmp_path / "noquick.yaml"
    cfg.write_text("dtypes: [fp32]\ncases:\n  - op: matmul\n    label: sq\n"
                   "    shape: {M: [16, 24, 32, 40], N: M, K: M}\n")
    plan = plan_kernels(None, config=cfg, quick=True, providers="torch")
    assert [c.shape["M"] for c in plan.cases] == [16, 24]
    assert {c.precision for c in plan.cases} == {"ieee"}


def test_matmul_tf32_operands_reach_triton_as_tf32_values(tmp_path, monkeypatch):
    """Option tf32_operands: every provider gets a and w as TF32 values, and triton's matmul is
    told so (tf32_exact), as the model's TF32 GEMMs are."""
    import torch

    from vitbench import kernels as K
    from vitbench.suites.kernels import run_kernels

    def tf32_valued(t):
        return bool(((t.contiguous().view(torch.int32) & 0x1FFF) == 0).all())

    cfg = tmp_path / "t32.yaml"
    cfg.write_text("dtypes: [fp32]\nprecisions: [tf32]\ncases:\n  - op: matmul\n    label: t\n"
                   "    shape: {B: 2, T: 9, N: 24, K: 40}\n    options: {epilogue: gelu, tf32_operands: true}\n")
    seen, real = [], K.matmul

    def spy(a, w, *args, **kwargs):
        seen.append((kwargs.get("tf32_exact"), tf32_valued(a), tf32_valued(w)))
        return real(a, w, *args, **kwargs)

    monkeypatch.setattr(K, "matmul", spy)
    res = run_kernels(plan_kernels(None, config=cfg, providers="triton,torch"), out_dir=tmp_path, progress=False)
    assert seen and set(seen) == {(True, True, True)}
    assert len(res.rows) == 2 and all(r["ok"] for r in res.rows), res.rows


def test_shipped_vit_tf32_config():
    from vitbench.suites.config import load_kernel_config
    from vitbench.suites.kernels import configs_dir

    cfg = load_kernel_config(configs_dir() / "kernels" / "vit_tf32.yaml")
    assert cfg.dtypes == ["fp32"] and cfg.precisions == ["tf32"]
    assert [c.label for c in cfg.cases] == ["b16-qkv-t32", "b16-proj-t32", "b16-fc1-t32", "b16-fc2-t32"]
    assert all(c.op == "matmul" and c.options.get("tf32_operands") is True for c in cfg.cases)
