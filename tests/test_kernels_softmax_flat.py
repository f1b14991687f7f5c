"""softmax's FLAT path: packed rows whose width is no multiple of 16 bytes (ViT's 197-wide
attention rows) move as one 16-byte-aligned flat range per program, laid out as rows by register
gathers. CPU (interpreter): it is taken exactly where `flat_rows` says, its results match float64
on poisoned outputs (full programs and the 2-D tail program), and an offline sm_90 build of it
moves 16-byte vectors where the row-wise path moves 2 bytes at a time.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from tests.offline_build import without_interpreter
from tests.test_kernels_elementwise import assert_close, rand, sm_ref
from vitbench._backend import DEVICE
from vitbench.kernels import softmax
from vitbench.numerics import poisoned

sm = importlib.import_module("vitbench.kernels.softmax")
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")


@pytest.fixture
def flat_seen(monkeypatch):
    """The FLAT flag of every launch."""
    seen = []
    real = sm.flat_rows
    monkeypatch.setattr(sm, "flat_rows", lambda *a: seen.append(real(*a)) or seen[-1])
    return seen


@pytest.mark.parametrize("shape,dtype", [
    ((37, 197), torch.float16),  # 2 full programs of 16 rows, then a 2-D tail program of 5
    ((2, 3, 24, 197), torch.float16),  # 144 rows: full programs only
    ((70, 99), torch.float32),  # 396-byte rows
    ((16, 3), torch.float16),  # 6-byte rows
], ids=["197-tail", "4d-197", "fp32-99", "fp16-3"])
@pytest.mark.parametrize("scale", [1.0, -0.6])
def test_flat_path_matches_float64(flat_seen, shape, dtype, scale):
    x = rand(*shape, dtype=dtype, scale=4.0)
    out = poisoned(shape, dtype, DEVICE)
    assert softmax(x, scale=scale, out=out) is out
    assert flat_seen == [True]
    assert_close(out, sm_ref(x, scale), dtype)


def test_flat_path_huge_values(flat_seen):
    x = rand(24, 197, dtype=torch.float16, scale=1e4).clamp(-6e4, 6e4)
    assert_close(softmax(x), sm_ref(x), torch.float16)
    assert flat_seen == [True]


@pytest.mark.parametrize("make,why", [
    (lambda: rand(40, 256, dtype=torch.float16)[:, :197], "strided rows"),
    (lambda: rand(40, 256, dtype=torch.float16), "aligned rows (512 bytes)"),
    (lambda: rand(40, 197, dtype=torch.float16).flatten()[3:3 + 39 * 197].view(39, 197), "unaligned base"),
])
def test_row_path_where_flat_does_not_apply(flat_seen, make, why):
    x = make()
    assert_close(softmax(x), sm_ref(x), torch.float16)
    assert flat_seen == [False], why


def test_flat_rows_needs_eight_rows_per_program():
    x = torch.empty(64, 197, dtype=torch.float16)
    assert sm.flat_rows(x, x, 8, 256) and sm.flat_rows(x, x, 16, 256)
    assert not sm.flat_rows(x, x, 4, 256)  # a program's range would start off 16-byte alignment
    assert not sm.flat_rows(x, x, 8, 128)  # rows wider than a block: the online path


def test_offline_build_moves_16_byte_vectors():
    code = """
import re, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import importlib
fn = importlib.import_module("vitbench.kernels.softmax")._softmax_kernel.fn
sig = {"x_ptr": "*bf16", "out_ptr": "*bf16", "n_rows": "i32", "n_cols": "i32", "stride_x": "i32",
       "stride_out": "i32", "scale": "fp32", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr",
       "SINGLE": "constexpr", "PDL": "constexpr", "FLAT": "constexpr"}
for flat in (True, False):
    consts = {"BLOCK_M": 16, "BLOCK_N": 256, "SINGLE": True, "PDL": False, "FLAT": flat}
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts,
                                 attrs={(0,): [["tt.divisibility", 16]], (1,): [["tt.divisibility", 16]]}),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    print(flat, sorted(set(re.findall(r"(?:ld|st)\\.global[.\\w]*", k.asm["ptx"]))))
"""
    lines = dict(line.split(" ", 1) for line in without_interpreter(code).strip().splitlines())
    assert "ld.global.v4.b32" in lines["True"] and "st.global.v4.b32" in lines["True"], lines
    assert "ld.global.v4.b32" not in lines["False"], lines  # the row-wise path: 2-byte accesses


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
def test_gpu_vit_attention_rows(flat_seen, dtype):
    # ViT-B/16's attention probabilities at batch 8: 18,912 rows of 197, every program full but
    # the last; a negative scale as a check on the masking of the padded columns
    x = rand(8, 12, 197, 197, dtype=dtype, scale=3.0)
    for scale in (1.0, -0.7):
        out = poisoned(x.shape, dtype, DEVICE)
        softmax(x, scale=scale, out=out)
        assert_close(out, sm_ref(x, scale), dtype)
    assert flat_seen == [True, True]
