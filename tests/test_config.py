"""Sweep config loading: the shipped files, expansion rules, and one clear error per mistake."""

from pathlib import Path

import pytest

from vitbench.errors import VitbenchError
from vitbench.suites.config import load_kernel_config
from vitbench.suites.kernels import configs_dir, sweep_names

GOOD = """\
description: test sweep
dtypes: [fp32, bf16]
precisions: [ieee, tf32]
providers: [triton, torch]
timer: warm
repeats: {budget_s: 0.1, min_reps: 5, max_reps: 50}
cases:
  - op: matmul
    label: square
    shape: {M: {from: 64, to: 256, step: 64}, N: M, K: M}
    options: {bias: false, epilogue: gelu}
  - op: softmax
    label: cols
    shape: {B: 2, T: [3, 5], N: {from: 32, to: 256, mul: 2}}
    dtypes: [fp16]
quick:
  - op: add
    label: tiny
    shape: {T: 3, D: 5}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def test_good_file_expands(tmp_path):
    cfg = load_kernel_config(write(tmp_path, GOOD))
    assert cfg.timer == "warm" and cfg.providers == ["triton", "torch"]
    assert cfg.repeats.budget_s == 0.1 and cfg.repeats.max_reps == 50
    mm, sm = cfg.cases
    # Inclusive range, and N, K tied to M.
    assert mm.shapes() == [{"M": m, "N": m, "K": m} for m in (64, 128, 192, 256)]
    assert mm.options == {"bias": False, "epilogue": "gelu"}
    # Product of T x N (N geometric), defaults filled in canonical order (B, H, T, N).
    shapes = sm.shapes()
    assert len(shapes) == 2 * 4
    assert shapes[0] == {"B": 2, "H": 1, "T": 3, "N": 32}
    assert shapes[-1] == {"B": 2, "H": 1, "T": 5, "N": 256}
    assert sm.dtypes == ["fp16"]
    assert cfg.quick[0].shapes() == [{"B": 1, "T": 3, "D": 5}]


def test_shipped_configs_load():
    names = sweep_names()
    for op in ("add", "layernorm", "softmax", "matmul", "bmm", "patch_embed", "attention", "vit"):
        assert op in names
        cfg = load_kernel_config(configs_dir() / "kernels" / f"{op}.yaml")
        assert cfg.cases and cfg.quick, f"{op}.yaml needs cases and quick shapes"


def expect_error(tmp_path, text: str, *needles: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(VitbenchError) as info:
        load_kernel_config(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg  # names the file
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_malformed_yaml(tmp_path):
    expect_error(tmp_path, "cases: [\n  - op: add\n", "malformed YAML", "line")


def test_not_a_mapping(tmp_path):
    expect_error(tmp_path, "- just\n- a list\n", "mapping")


def test_unknown_key(tmp_path):
    expect_error(tmp_path, GOOD.replace("timer: warm", "timr: warm"), "timr")


def test_unknown_key_inside_a_case(tmp_path):
    expect_error(tmp_path, GOOD.replace("label: square", "label: square\n    colour: red"),
                 "cases[0].colour")


def test_bad_dtype(tmp_path):
    expect_error(tmp_path, GOOD.replace("[fp32, bf16]", "[fp32, float8]"), "dtypes[1]", "float8")


def test_negative_size(tmp_path):
    expect_error(tmp_path, GOOD.replace("T: [3, 5]", "T: [3, -5]"), "cases[1].shape", "T", "-5")


def test_negative_range(tmp_path):
    expect_error(tmp_path, GOOD.replace("from: 64", "from: -64"), "cases[0].shape.M", "-64")


def test_backwards_range(tmp_path):
    expect_error(tmp_path, GOOD.replace("to: 256, step: 64", "to: 16, step: 64"),
                 "cases[0].shape.M", "below")


def test_unknown_op(tmp_path):
    expect_error(tmp_path, GOOD.replace("op: softmax", "op: sofmax"), "cases[1].op", "sofmax")


def test_unknown_shape_parameter(tmp_path):
    expect_error(tmp_path, GOOD.replace("N: M, K: M", "N: M, K: M, Q: 3"), "cases[0]", "Q")


def test_missing_shape_parameter(tmp_path):
    expect_error(tmp_path, GOOD.replace("shape: {T: 3, D: 5}", "shape: {T: 3}"), "quick[0]", "D")


def test_bad_option(tmp_path):
    expect_error(tmp_path, GOOD.replace("epilogue: gelu", "epilogue: relu"), "cases[0]", "relu")


def test_bad_timer_and_provider(tmp_path):
    expect_error(tmp_path, GOOD.replace("timer: warm", "timer: lukewarm"), "timer", "lukewarm")
    expect_error(tmp_path, GOOD.replace("[triton, torch]", "[triton, jax]"), "providers", "jax")


def test_impossible_shape(tmp_path):
    text = GOOD + "  - op: patch_embed\n    label: p\n    shape: {B: 1, S: 50, P: 16, D: 8}\n"
    expect_error(tmp_path, text, "quick[1].shape", "multiple")


def test_tie_to_unknown_parameter(tmp_path):
    expect_error(tmp_path, GOOD.replace("N: M, K: M", "N: M, K: Z"), "cases[0]", "Z")


def test_missing_file(tmp_path):
    with pytest.raises(VitbenchError, match="cannot read"):
        load_kernel_config(tmp_path / "nope.yaml")
