"""matmul (fused epilogues), bmm and patch_embed against float64 PyTorch references.

CPU (Triton interpreter): fp32 ieee/tf32 and fp16 on small irregular shapes. The `gpu` set adds
bf16 and the real ViT-B/16 batch-32 shapes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.kernels import EPILOGUES, _gelu, bmm, matmul, patch_embed
from vitbench.kernels._gelu import gelu_eval
from vitbench.kernels.bmm import bmm_cost
from vitbench.kernels.matmul import matmul_cost
from vitbench.kernels.patch_embed import patch_embed_cost
from vitbench.numerics import poisoned, rel_err, tolerance

# (dtype, precision): the precisions each dtype is checked with.
CASES = [(torch.float32, "ieee"), (torch.float32, "tf32"), (torch.float16, "ieee")]
CASE_IDS = ["fp32-ieee", "fp32-tf32", "fp16"]
GPU_CASES = CASES + [(torch.bfloat16, "ieee")]
GPU_IDS = CASE_IDS + ["bf16"]


def rand(*shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).to(device=DEVICE, dtype=dtype)


def linear_ref(a, w, bias, epilogue, residual):
    """float64 reference of matmul's contract."""
    y = a.double() @ w.double().T
    if bias is not None:
        y = y + bias.double()
    if epilogue in ("gelu", "gelu_residual"):
        y = F.gelu(y)
    elif epilogue == "gelu_tanh":
        y = F.gelu(y, approximate="tanh")
    if epilogue in ("residual", "gelu_residual"):
        y = y + residual.double()
    return y


def check_matmul(shape_a, N, dtype, precision, epilogue="none", with_bias=True):
    K = shape_a[-1]
    a = rand(*shape_a, dtype=dtype)
    w = rand(N, K, dtype=dtype, scale=K ** -0.5)
    bias = rand(N, dtype=dtype) if with_bias else None
    out_shape = (*shape_a[:-1], N)
    residual = rand(*out_shape, dtype=dtype) if epilogue in ("residual", "gelu_residual") else None
    out = poisoned(out_shape, dtype, DEVICE)
    got = matmul(a, w, bias, epilogue=epilogue, residual=residual, precision=precision, out=out)
    assert got is out and got.dtype == dtype
    err = rel_err(got, linear_ref(a, w, bias, epilogue, residual))
    assert err < tolerance(dtype, precision), f"rel err {err}"


# ---------------------------------------------------------------------------------------- matmul


@pytest.mark.parametrize("epilogue", EPILOGUES)
@pytest.mark.parametrize("dtype,precision", CASES, ids=CASE_IDS)
def test_matmul_epilogues(dtype, precision, epilogue):
    check_matmul((37, 70), 45, dtype, precision, epilogue)


@pytest.mark.parametrize("epilogue", ["none", "gelu_residual"])
def test_matmul_3d_no_bias(epilogue):
    check_matmul((2, 33, 50), 29, torch.float32, "ieee", epilogue, with_bias=False)


def test_matmul_strided_views():
    # A is a column slice of a wider buffer (row stride 90), W a transposed view (K-major
    # storage), out and residual column slices: all read/written through strides, no copies.
    M, K, N = 41, 67, 35
    a = rand(M, 90)[:, 7:7 + K]
    w = rand(K, N, scale=K ** -0.5).t()
    bias = rand(N)
    residual = rand(M, 50)[:, 3:3 + N]
    buf = poisoned((M, N + 11), torch.float32, DEVICE)
    out = buf[:, 5:5 + N]
    matmul(a, w, bias, epilogue="residual", residual=residual, out=out)
    assert rel_err(out, linear_ref(a, w, bias, "residual", residual)) < 1e-5
    # nothing outside the view was written
    assert torch.isnan(buf[:, :5]).all() and torch.isnan(buf[:, 5 + N:]).all()


def test_matmul_3d_noncontiguous_rows():
    # [B, T, K] whose batch stride is not T * row stride (cannot be flattened without a copy).
    a = rand(3, 40, 52)[:, 5:31, :]
    w = rand(19, 52, scale=52 ** -0.5)
    got = matmul(a, w, None)
    assert got.shape == (3, 26, 19)
    assert rel_err(got, linear_ref(a, w, None, "none", None)) < 1e-5


def test_matmul_inplace_residual():
    # x = x + gelu(h @ w.T + b), out aliasing residual
    x = rand(23, 31)
    x0 = x.clone()
    h, w, b = rand(23, 40), rand(31, 40, scale=40 ** -0.5), rand(31)
    got = matmul(h, w, b, epilogue="gelu_residual", residual=x, out=x)
    assert got is x
    assert rel_err(x, linear_ref(h, w, b, "gelu_residual", x0)) < 1e-5


def test_matmul_large_gelu_inputs_finite():
    # saturated GELU tails (|x| ~ 1e3) must give x or 0, never inf/NaN
    a = rand(8, 16, scale=100.0)
    w = rand(12, 16)
    for ep in ("gelu", "gelu_tanh"):
        got = matmul(a, w, None, epilogue=ep)
        assert rel_err(got, linear_ref(a, w, None, ep, None)) < 1e-5


# form -> (max abs error on [-14, 14], max relative error where |gelu| >= 0.1). "hw" (the fit with
# one tanh.approx.f32): measured 3.0e-5 and 2.5e-4 on an H100 (tools/gelu_probe.py); under the
# interpreter its tanh is computed from exp, so it is the fit's function there.
_GELU_BOUNDS = {"erf": (2e-6, 1e-5), "tanh": (2e-6, 1e-5), "fit": (3e-5, 2.5e-4), "hw": (4e-5, 3e-4)}


@pytest.mark.parametrize("form", list(_GELU_BOUNDS))
def test_gelu_epilogue_elementwise_accuracy(form):
    """The epilogue's GELU, element by element in fp32, against float64 torch: abs error <= 2e-6 on
    [-14, 14] (the erf form's erf is not libdevice's; the fitted form, for 16-bit outputs: 3e-5,
    and 2.5e-4 relative where |gelu| >= 0.1, under fp16's half ulp; with the hardware tanh, the
    16-bit default: 4e-5 and 3e-4), and as torch at +-1e30, +-inf, +-0, NaN (the fitted forms'
    clamp of x^2 at 36 is crossed on the way to +-14)."""
    special = [1e30, -1e30, float("inf"), -float("inf"), 0.0, -0.0, float("nan")]
    x = torch.cat([torch.linspace(-14, 14, 40_001, dtype=torch.float64), torch.tensor(special)])
    xf = x.to(device=DEVICE, dtype=torch.float32)
    got = gelu_eval(xf, form).double().cpu()
    ref = F.gelu(xf.double().cpu(), approximate="tanh" if form == "tanh" else "none")
    k = len(special)
    err = (got[:-k] - ref[:-k]).abs()
    abs_bound, rel_bound = _GELU_BOUNDS[form]
    assert err.max().item() <= abs_bound, f"max abs error {err.max().item():.3e} at x={x[err.argmax()].item()}"
    big = ref[:-k].abs() >= 0.1
    assert (err[big] / ref[:-k][big].abs()).max().item() <= rel_bound
    torch.testing.assert_close(got[-k:], ref[-k:], rtol=0, atol=0, equal_nan=True)


@pytest.mark.gpu
@pytest.mark.parametrize("form", list(_GELU_BOUNDS))
def test_gpu_gelu_epilogue_elementwise_accuracy(form):
    """The check above in the `gpu` set, on the GPU's own instructions (tanh.approx.f32 for "hw")."""
    test_gelu_epilogue_elementwise_accuracy(form)


def test_gelu_eval_rejects_bad_input():
    with pytest.raises(VitbenchError, match="GELU form"):
        gelu_eval(torch.zeros(4, device=DEVICE), "exact")
    with pytest.raises(VitbenchError, match="float32"):
        gelu_eval(torch.zeros(4, device=DEVICE, dtype=torch.float16), "hw")


@pytest.mark.parametrize("fast,form", [(True, 2), (False, 1)])
def test_gelu_form_by_dtype_and_switch(monkeypatch, fast, form):
    # fp32 outputs always take the erf form; 16-bit ones the hardware-tanh form unless switched off
    monkeypatch.setattr(_gelu, "_FAST_GELU", fast)
    assert _gelu.gelu_form(torch.float32) == 0
    assert _gelu.gelu_form(torch.float16) == form
    assert _gelu.gelu_form(torch.bfloat16) == form


def test_fast_gelu_read_at_import():
    # the switch is read once, when the kernels are imported (as the CLI and the model see it)
    code = "import torch, vitbench.kernels._gelu as g; print(g.gelu_form(torch.float16), g.gelu_form(torch.float32))"
    for value, want in (("0", "1 0"), ("1", "2 0"), ("", "2 0")):
        env = {**os.environ, "VITBENCH_FAST_GELU": value}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             check=True, timeout=300)
        assert out.stdout.split() == want.split(), (value, out.stdout, out.stderr[-500:])


def test_fast_gelu_setting(monkeypatch):
    monkeypatch.setenv("VITBENCH_FAST_GELU", "0")
    assert _gelu.fast_gelu_setting() is False
    monkeypatch.delenv("VITBENCH_FAST_GELU")
    assert _gelu.fast_gelu_setting() is True
    monkeypatch.setenv("VITBENCH_FAST_GELU", "yes")
    with pytest.raises(VitbenchError, match="VITBENCH_FAST_GELU"):
        _gelu.fast_gelu_setting()


def test_matmul_cost():
    flops, nbytes = matmul_cost(4, 5, 6, 2, has_bias=True, has_residual=True)
    assert flops == 2 * 4 * 5 * 6
    assert nbytes == 2 * (4 * 6 + 5 * 6 + 5 + 2 * 4 * 5)
    assert matmul_cost(4, 5, 6, 4)[1] == 4 * (4 * 6 + 5 * 6 + 4 * 5)


def _mm_args():
    return rand(9, 12), rand(7, 12), rand(7)


@pytest.mark.parametrize("mutate,needle", [
    (lambda a, w, b: dict(a=a.to(torch.int32)), "a has dtype"),
    (lambda a, w, b: dict(w=w.half()), "dtype mismatch"),
    (lambda a, w, b: dict(bias=b.half()), "dtype mismatch"),
    (lambda a, w, b: dict(w=rand(7, 13)), "w has shape"),
    (lambda a, w, b: dict(a=rand(12)), "a must have 2 or 3 dims"),
    (lambda a, w, b: dict(a=rand(1, 2, 9, 12)), "a must have 2 or 3 dims"),
    (lambda a, w, b: dict(w=rand(1, 7, 12)), "w must have 2 dims"),
    (lambda a, w, b: dict(bias=rand(8)), "bias has shape"),
    (lambda a, w, b: dict(bias=rand(1, 7)), "bias must have 1 dims"),
    (lambda a, w, b: dict(epilogue="relu"), "epilogue must be one of"),
    (lambda a, w, b: dict(precision="fp16"), "precision must be one of"),
    (lambda a, w, b: dict(epilogue="residual"), "needs a residual"),
    (lambda a, w, b: dict(epilogue="gelu_residual"), "needs a residual"),
    (lambda a, w, b: dict(residual=rand(9, 7)), "residual given"),
    (lambda a, w, b: dict(epilogue="residual", residual=rand(9, 8)), "residual has shape"),
    (lambda a, w, b: dict(epilogue="residual", residual=rand(1, 9, 7)), "residual must have 2 dims"),
    (lambda a, w, b: dict(out=rand(9, 8)), "out has shape"),
    (lambda a, w, b: dict(out=rand(9, 7).double()), "out has dtype"),
    (lambda a, w, b: dict(out=torch.empty(9, 7, device="meta")), "out is on meta"),
    (lambda a, w, b: dict(a=torch.empty(9, 12, device="meta")), "a is on meta"),
    (lambda a, w, b: dict(w="weights"), "w must be a torch.Tensor"),
])
def test_matmul_bad_inputs(mutate, needle):
    a, w, b = _mm_args()
    kwargs = dict(a=a, w=w, bias=b)
    kwargs.update(mutate(a, w, b))
    with pytest.raises(VitbenchError, match=needle):
        matmul(kwargs.pop("a"), kwargs.pop("w"), kwargs.pop("bias"), **kwargs)


def test_matmul_out_overlapping_input_rejected():
    buf = rand(9, 12)
    with pytest.raises(VitbenchError, match="out overlaps a"):
        matmul(buf, rand(7, 12), None, out=buf[:, :7])


# ------------------------------------------------------------------------------------------- bmm


def bmm_ref(a, b, scale, transpose_b):
    b64 = b.double().transpose(-1, -2) if transpose_b else b.double()
    return scale * (a.double() @ b64)


@pytest.mark.parametrize("transpose_b,scale", [(False, 1.0), (True, 0.125), (False, -2.5)])
@pytest.mark.parametrize("dtype,precision", CASES, ids=CASE_IDS)
def test_bmm(dtype, precision, transpose_b, scale):
    a = rand(3, 37, 45, dtype=dtype)
    b = rand(3, 41, 45, dtype=dtype) if transpose_b else rand(3, 45, 41, dtype=dtype)
    out = poisoned((3, 37, 41), dtype, DEVICE)
    got = bmm(a, b, scale=scale, transpose_b=transpose_b, precision=precision, out=out)
    assert got is out
    assert rel_err(got, bmm_ref(a, b, scale, transpose_b)) < tolerance(dtype, precision)


@pytest.mark.parametrize("transpose_b", [False, True])
def test_bmm_4d_from_fused_qkv_views(transpose_b):
    # q, k laid out as a fused QKV projection [B, T, 3, H, d] -> [B, H, T, d] permuted views
    B, T, H, d = 2, 19, 3, 24
    qkv = rand(B, T, 3, H, d)
    q = qkv[:, :, 0].permute(0, 2, 1, 3)
    k = qkv[:, :, 1].permute(0, 2, 1, 3)
    kk = k if transpose_b else k.transpose(-1, -2)  # [B, H, d, T], last dim not contiguous
    got = bmm(q, kk, scale=d ** -0.5, transpose_b=transpose_b)
    assert got.shape == (B, H, T, T)
    assert rel_err(got, bmm_ref(q, kk, d ** -0.5, transpose_b)) < 1e-5


def test_bmm_cost():
    flops, nbytes = bmm_cost(3, 4, 5, 6, 2)
    assert flops == 2 * 3 * 4 * 5 * 6
    assert nbytes == 2 * 3 * (4 * 6 + 6 * 5 + 4 * 5)


@pytest.mark.parametrize("a_shape,b_shape,kwargs,needle", [
    ((2, 5, 8), (2, 9, 7), {}, "its K 9"),
    ((2, 5, 8), (2, 7, 9), {"transpose_b": True}, "its K 9"),
    ((2, 5, 8), (3, 8, 7), {}, "batch dims differ"),
    ((5, 8), (8, 7), {}, "a must have 3 or 4 dims"),
    ((2, 5, 8), (1, 2, 8, 7), {}, "b must have 3 dims"),
    ((2, 5, 8), (2, 8, 7), {"precision": "bf16x4"}, "precision must be one of"),
    ((2, 5, 8), (2, 8, 7), {"scale": "0.5"}, "scale must be a number"),
    ((2, 5, 8), (2, 8, 7), {"out": "x"}, "out must be a torch.Tensor"),
])
def test_bmm_bad_shapes(a_shape, b_shape, kwargs, needle):
    with pytest.raises(VitbenchError, match=needle):
        bmm(rand(*a_shape), rand(*b_shape), **kwargs)


def test_bmm_bad_dtypes():
    with pytest.raises(VitbenchError, match="dtype mismatch"):
        bmm(rand(2, 5, 8), rand(2, 8, 7, dtype=torch.float16))
    with pytest.raises(VitbenchError, match="a has dtype"):
        bmm(torch.ones(2, 5, 8, dtype=torch.int64), rand(2, 8, 7))


# ----------------------------------------------------------------------------------- patch_embed


def patch_ref(pixels, weight, bias, pos=None):
    y = F.conv2d(pixels.double(), weight.double(), None if bias is None else bias.double(),
                 stride=weight.shape[-1])
    y = y.flatten(2).transpose(1, 2)
    return y if pos is None else y + pos.double()


@pytest.mark.parametrize("B,C,H,W,p,D", [
    (2, 3, 32, 48, 16, 40),  # ViT patch size, 2x3 patches
    (1, 1, 12, 20, 4, 23),  # grey image, odd D
    (2, 3, 14, 21, 7, 17),  # odd patch size: K = 147 not a multiple of any block
])
@pytest.mark.parametrize("dtype,precision", CASES, ids=CASE_IDS)
def test_patch_embed(dtype, precision, B, C, H, W, p, D):
    pixels = rand(B, C, H, W, dtype=dtype)
    weight = rand(D, C, p, p, dtype=dtype, scale=(C * p * p) ** -0.5)
    bias = rand(D, dtype=dtype)
    got = patch_embed(pixels, weight, bias, precision=precision)
    assert got.shape == (B, (H // p) * (W // p), D) and got.dtype == dtype
    assert rel_err(got, patch_ref(pixels, weight, bias)) < tolerance(dtype, precision)


def test_patch_embed_into_token_buffer_with_pos_embed():
    # the model's use: patches into rows 1.. of [B, 1+NP, D], position embedding fused,
    # channels-last pixels (strided) and no bias
    B, C, H, W, p, D = 2, 3, 16, 24, 8, 21
    NP = (H // p) * (W // p)
    pixels = rand(B, H, W, C).permute(0, 3, 1, 2)
    weight = rand(D, C, p, p, scale=(C * p * p) ** -0.5)
    pos = rand(NP, D)
    buf = poisoned((B, 1 + NP, D), torch.float32, DEVICE)
    got = patch_embed(pixels, weight, None, pos_embed=pos, out=buf[:, 1:])
    assert got.data_ptr() == buf[:, 1:].data_ptr()
    assert rel_err(buf[:, 1:], patch_ref(pixels, weight, None, pos)) < 1e-5
    assert torch.isnan(buf[:, 0]).all()  # the CLS row is left alone


def test_patch_embed_writes_the_cls_rows_in_the_same_launch():
    # the model's use with the CLS row: h[:, 0] = cls_token for every image, exactly (a copy);
    # B * NP = 18 rows: images start inside row tiles and at tile edges
    B, C, H, W, p, D = 3, 3, 16, 24, 8, 21
    NP = (H // p) * (W // p)
    pixels = rand(B, C, H, W)
    weight = rand(D, C, p, p, scale=(C * p * p) ** -0.5)
    pos, cls = rand(NP, D), rand(2 * D)[::2]  # cls_token with a stride
    for dtype in (torch.float32, torch.float16):
        buf = poisoned((B, 1 + NP, D), dtype, DEVICE)
        patch_embed(pixels.to(dtype), weight.to(dtype), None, pos_embed=pos.to(dtype),
                    out=buf[:, 1:], cls_token=cls.to(dtype), cls_out=buf[:, 0])
        assert torch.equal(buf[:, 0], cls.to(dtype).expand(B, D))
        ref = patch_ref(pixels.to(dtype), weight.to(dtype), None, pos.to(dtype))
        assert rel_err(buf[:, 1:], ref) < tolerance(dtype)
    with pytest.raises(VitbenchError, match="go together"):
        patch_embed(pixels, weight, None, cls_token=cls)
    with pytest.raises(VitbenchError, match="cls_token has shape"):
        patch_embed(pixels, weight, None, cls_token=rand(D + 1), cls_out=rand(B, D))
    with pytest.raises(VitbenchError, match="cls_out has shape"):
        patch_embed(pixels, weight, None, cls_token=cls, cls_out=rand(B, D + 1))


def test_patch_embed_cost():
    flops, nbytes = patch_embed_cost(2, 3, 32, 48, 40, 16, 4)
    K, NP = 3 * 16 * 16, 6
    assert flops == 2 * 2 * NP * 40 * K
    assert nbytes == 4 * (2 * 3 * 32 * 48 + 40 * K + 40 + 2 * NP * 40)
    assert patch_embed_cost(2, 3, 32, 48, 40, 16, 4, has_pos=True, has_cls=True)[1] == \
        nbytes + 4 * (NP * 40 + 3 * 40)  # + pos_embed read, cls_token read, 2 CLS rows written


@pytest.mark.parametrize("px,wt,b,kwargs,needle", [
    ((1, 3, 30, 32), (8, 3, 16, 16), (8,), {}, "not a multiple of the patch size 16"),
    ((1, 3, 32, 36), (8, 3, 16, 16), (8,), {}, "not a multiple of the patch size 16"),
    ((1, 1, 32, 32), (8, 3, 16, 16), (8,), {}, "3 input channels"),
    ((1, 3, 32, 32), (8, 3, 16, 8), (8,), {}, "square kernel"),
    ((1, 3, 32, 32), (8, 3, 16, 16), (9,), {}, "bias has shape"),
    ((3, 32, 32), (8, 3, 16, 16), (8,), {}, "pixels must have 4 dims"),
    ((1, 3, 32, 32), (8, 768), (8,), {}, "weight must have 4 dims"),
    ((1, 3, 32, 32), (8, 3, 16, 16), (8,), {"precision": "fast"}, "precision must be one of"),
    ((1, 3, 32, 32), (8, 3, 16, 16), (8,), {"pos_embed": (5, 8)}, "pos_embed has shape"),
    ((1, 3, 32, 32), (8, 3, 16, 16), (8,), {"out": (1, 5, 8)}, "out has shape"),
])
def test_patch_embed_bad_inputs(px, wt, b, kwargs, needle):
    kwargs = {k: rand(*v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    with pytest.raises(VitbenchError, match=needle):
        patch_embed(rand(*px), rand(*wt), rand(*b), **kwargs)


def test_patch_embed_bad_dtypes():
    with pytest.raises(VitbenchError, match="dtype mismatch"):
        patch_embed(rand(1, 3, 16, 16), rand(8, 3, 16, 16, dtype=torch.float16), rand(8))
    with pytest.raises(VitbenchError, match="pixels has dtype"):
        patch_embed(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), rand(8, 3, 16, 16), rand(8))


# ----------------------------------------------------------------- GPU: real ViT-B/16 @ batch 32

T32 = 32 * 197  # token rows at batch 32


@pytest.mark.gpu
@pytest.mark.parametrize("name,M,N,K,epilogue", [
    ("qkv", T32, 2304, 768, "none"),
    ("out_proj", T32, 768, 768, "residual"),
    ("fc1", T32, 3072, 768, "gelu"),
    ("fc1_tanh", T32, 3072, 768, "gelu_tanh"),
    ("fc2", T32, 768, 3072, "residual"),
])
@pytest.mark.parametrize("dtype,precision", GPU_CASES, ids=GPU_IDS)
def test_gpu_matmul_vit_shapes(dtype, precision, name, M, N, K, epilogue):
    check_matmul((M, K), N, dtype, precision, epilogue)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,precision", GPU_CASES, ids=GPU_IDS)
def test_gpu_matmul_3d_and_small_batch(dtype, precision):
    check_matmul((32, 197, 768), 3072, dtype, precision, "gelu_residual")
    check_matmul((197, 768), 768, dtype, precision, "residual")  # batch 1
    check_matmul((1001, 333), 517, dtype, precision, "gelu")  # ragged everywhere


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_matmul_inplace_residual_survives_autotune(dtype):
    # a shape no other test uses: its first call is in place (tuned out of place first: tune_apart)
    x = rand(4 * 197 + 3, 768, dtype=dtype)
    x0 = x.clone()
    h = rand(x.shape[0], 3072, dtype=dtype)
    w, b = rand(768, 3072, dtype=dtype, scale=3072 ** -0.5), rand(768, dtype=dtype)
    matmul(h, w, b, epilogue="residual", residual=x, out=x)
    assert rel_err(x, linear_ref(h, w, b, "residual", x0)) < tolerance(dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,precision", GPU_CASES, ids=GPU_IDS)
def test_gpu_bmm_attention_shapes(dtype, precision):
    q, k = rand(384, 197, 64, dtype=dtype), rand(384, 197, 64, dtype=dtype)
    out = poisoned((384, 197, 197), dtype, DEVICE)
    bmm(q, k, scale=0.125, transpose_b=True, precision=precision, out=out)
    assert rel_err(out, bmm_ref(q, k, 0.125, True)) < tolerance(dtype, precision)
    p, v = rand(32, 12, 197, 197, dtype=dtype), rand(32, 12, 197, 64, dtype=dtype)
    got = bmm(p, v, precision=precision)
    assert rel_err(got, bmm_ref(p, v, 1.0, False)) < tolerance(dtype, precision)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,precision", GPU_CASES, ids=GPU_IDS)
def test_gpu_patch_embed_vit_b16(dtype, precision):
    pixels = rand(32, 3, 224, 224, dtype=dtype)
    weight = rand(768, 3, 16, 16, dtype=dtype, scale=768 ** -0.5)
    bias = rand(768, dtype=dtype)
    out = poisoned((32, 196, 768), dtype, DEVICE)
    patch_embed(pixels, weight, bias, precision=precision, out=out)
    assert rel_err(out, patch_ref(pixels, weight, bias)) < tolerance(dtype, precision)


def test_out_with_a_zero_stride_is_refused():
    a, w = torch.randn(5, 8), torch.randn(4, 8)
    with pytest.raises(VitbenchError, match="zero stride"):
        matmul(a, w, out=torch.empty(4).expand(5, 4))


def test_layouts_past_32_bit_offsets_are_refused():
    from vitbench.kernels._common import check_int32_offsets

    # Strided views spanning >= 2^31 elements inside one batch entry (meta tensors: no memory).
    far = torch.empty(2, 4, 8, device="meta").as_strided((2, 4, 8), (1, 2**30, 1))
    with pytest.raises(VitbenchError, match="32-bit"):
        check_int32_offsets("a", far, from_dim=1)
    check_int32_offsets("a", far[:, :2], from_dim=1)  # 2^30 + 7 < 2^31: fine
    check_int32_offsets("a", far, from_dim=2)  # the far dim is indexed in int64: fine
