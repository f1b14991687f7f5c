"""Shared option parsing and config loading of the suites: one clear line per mistake."""

from __future__ import annotations

import pytest

from vitbench.errors import VitbenchError
from vitbench.suites.config import load_kernel_config
from vitbench.suites.model_config import load_model_config
from vitbench.suites.options import check_choice, parse_choices, parse_positive_ints

DTYPES = ("fp32", "fp16", "bf16")


def test_choices_parse_strip_and_dedupe():
    assert parse_choices(" bf16, fp32,bf16 ", "dtype", DTYPES) == ["bf16", "fp32"]


@pytest.mark.parametrize("text,needle", [
    ("fp32,fp8", "--dtype: unknown value 'fp8'; choose from fp32, fp16, bf16"),
    ("fp32,", "--dtype 'fp32,': empty item"),
    ("", "--dtype '': empty item"),
    ("fp32,,fp16", "empty item"),
    ("FP32", "unknown value 'FP32'"),
])
def test_bad_choices(text, needle):
    with pytest.raises(VitbenchError) as info:
        parse_choices(text, "dtype", DTYPES)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_single_choice():
    assert check_choice("warm", "timer", ("cold", "warm")) == "warm"
    with pytest.raises(VitbenchError, match="--timer: unknown timer 'tepid'; choose from cold"):
        check_choice("tepid", "timer", ("cold", "warm"), "timer")


def test_positive_ints_name_the_option():
    assert parse_positive_ints("4,2,4", "batch") == [4, 2]
    with pytest.raises(VitbenchError, match=r"--size '3,x': 'x' is not an integer"):
        parse_positive_ints("3,x", "size")


@pytest.mark.parametrize("load", [load_kernel_config, load_model_config])
def test_loaders_refuse_python_tags(tmp_path, load):
    """yaml.safe_load only: a tag that would run code is a malformed file, never executed."""
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"description: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(VitbenchError) as info:
        load(bad)
    assert str(bad) in str(info.value) and "malformed YAML" in str(info.value)
    assert not marker.exists()
