"""Patch embedding: Conv2d(kernel = stride = p) as a GEMM with im2col fused into the A load.

out[b, r, d] = bias[d] + sum_{c,i,j} pixels[b, c, ph*p + i, pw*p + j] * weight[d, c, i, j]
(+ pos_embed[r, d] when given), with patch r = ph*GW + pw (row-major over the patch grid,
= Conv2d + flatten(2) + transpose(1, 2)). As a GEMM: M = B*NP rows (one per patch),
N = D, K = C*p*p. The kernel computes each A element's pixel address from (m, k) in registers;
no im2col buffer is written.

Cost (itemsize s, NP = H*W/p^2): FLOPs 2*B*NP*D*C*p*p; bytes s*(B*C*H*W + D*C*p*p + D + B*NP*D)
(+ s*NP*D with pos_embed): every pixel belongs to exactly one patch, so it is read once from DRAM.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vitbench._backend import INTERPRETER
from vitbench.errors import VitbenchError
from vitbench.kernels import _common
from vitbench.kernels._common import autotune, check_precision, check_same_dtype, check_tensor
from vitbench.kernels._pdl import launch_opts, pdl_start
from vitbench.kernels._tiles import grouped_tile, tf32_operand
from vitbench.kernels.matmul import check_out, gemm_config, prune_by_smem


# Interpreter: the first config only. GPU: M = B*196, N = K = 768 at ViT-B/16.
PATCH_CONFIGS = [gemm_config(32, 32, 32, 2, 4)] if INTERPRETER else [
    gemm_config(128, 128, 64, 3, 8),
    gemm_config(128, 128, 64, 4, 4),
    gemm_config(128, 256, 64, 3, 8),
    gemm_config(64, 128, 64, 4, 4),
    gemm_config(128, 64, 64, 4, 4),
    gemm_config(64, 64, 64, 4, 4),
    gemm_config(32, 64, 64, 4, 4),
]


@triton.jit
def _k_offsets(k, stride_c, stride_i, stride_j, P: tl.constexpr):
    # reduction index k = c*p*p + i*p + j (Conv2d weight order) -> element offset
    return (k // (P * P)) * stride_c + ((k // P) % P) * stride_i + (k % P) * stride_j


@autotune(PATCH_CONFIGS, key=["M", "N", "K", "P", "PRECISION", "HAS_POS"],
          prune_configs_by={"early_config_prune": prune_by_smem})
@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
@triton.jit
def _patch_embed_kernel(
    a_ptr,  # pixels [B, C, H, W], any strides (the im2col A operand, never materialised)
    w_ptr,  # weight [D, C, p, p] Conv2d layout, any strides (read as W^T [K, D])
    bias_ptr,  # bias [D] (unused unless HAS_BIAS)
    pos_ptr,  # pos_embed [NP, D] added in the epilogue (unused unless HAS_POS)
    out_ptr,  # out [B, NP, D], any strides (e.g. rows 1.. of a [B, 1+NP, D] buffer)
    cls_ptr,  # cls_token [D] (unused unless HAS_CLS)
    cls_out_ptr,  # cls_out [B, D], any strides: gets cls_token for every image (e.g. row 0)
    M, N, K,  # B*NP, D, C*p*p
    NP, GW,  # patches per image, patches per image row (W // p)
    stride_ab, stride_ac, stride_ah, stride_aw,
    stride_wd, stride_wc, stride_wi, stride_wj,
    stride_bias,
    stride_pr, stride_pd,
    stride_ob, stride_or, stride_od,
    stride_cls, stride_cb, stride_cd,
    P: tl.constexpr,  # patch size p (constexpr: the k -> (c, i, j) split becomes shifts/masks)
    HAS_BIAS: tl.constexpr, HAS_POS: tl.constexpr, HAS_CLS: tl.constexpr,
    PRECISION: tl.constexpr,  # tl.dot input_precision (_common.PRECISIONS; ignored for 16-bit)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, EVEN_K: tl.constexpr,
    PDL: tl.constexpr,  # programmatic dependent launch (kernels/_pdl.py)
):
    pdl_start(PDL)
    pid_m, pid_n = grouped_tile(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)

    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm_ld = rm % M
    rn_ld = rn % N
    # Row m = (image b, patch r = ph*GW + pw): offset of the patch's top-left pixel (channel 0).
    img = rm_ld // NP
    r_ld = rm_ld % NP
    row_a = (img.to(tl.int64) * stride_ab + ((r_ld // GW) * P).to(tl.int64) * stride_ah
             + ((r_ld % GW) * P).to(tl.int64) * stride_aw)
    col_w = rn_ld.to(tl.int64) * stride_wd
    offs_k = tl.arange(0, BLOCK_K)

    # Per iteration: gather BLOCK_M*BLOCK_K pixels + BLOCK_K*BLOCK_N weights,
    # 2*BLOCK_M*BLOCK_N*BLOCK_K FLOPs; fp32 accumulator.
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, tl.cdiv(K, BLOCK_K)):
        kk = k0 * BLOCK_K + offs_k
        a_ptrs = a_ptr + row_a[:, None] + _k_offsets(kk, stride_ac, stride_ah, stride_aw, P)[None, :]
        w_ptrs = w_ptr + col_w[None, :] + _k_offsets(kk, stride_wc, stride_wi, stride_wj, P)[:, None]
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(w_ptrs)
        else:
            a = tl.load(a_ptrs, mask=kk[None, :] < K, other=0.0)
            b = tl.load(w_ptrs, mask=kk[:, None] < K, other=0.0)
        # fp32 + "tf32": round both operands to nearest TF32 (cuBLAS parity; no-op otherwise)
        a = tf32_operand(a, PRECISION)
        b = tf32_operand(b, PRECISION)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)

    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn_ld * stride_bias).to(tl.float32)[None, :]
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    r = rm % NP
    if HAS_POS:
        p_ptrs = pos_ptr + r[:, None] * stride_pr + rn[None, :] * stride_pd
        acc += tl.load(p_ptrs, mask=mask, other=0.0).to(tl.float32)
    o_ptrs = (out_ptr + ((rm // NP).to(tl.int64) * stride_ob + r.to(tl.int64) * stride_or)[:, None]
              + rn[None, :] * stride_od)
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)
    if HAS_CLS:
        # The tile rows holding an image's first patch also write that image's CLS row (a copy
        # of cls_token, no arithmetic): one launch less than a separate copy kernel.
        first = (r == 0) & (rm < M)
        cls = tl.load(cls_ptr + rn_ld * stride_cls).to(cls_out_ptr.dtype.element_ty)
        c_ptrs = (cls_out_ptr + ((rm // NP).to(tl.int64) * stride_cb)[:, None]
                  + rn[None, :] * stride_cd)
        tl.store(c_ptrs, tl.broadcast_to(cls[None, :], (BLOCK_M, BLOCK_N)),
                 mask=first[:, None] & (rn[None, :] < N))


def patch_embed_cost(B: int, C: int, H: int, W: int, D: int, p: int, itemsize: int,
                     has_pos: bool = False, has_cls: bool = False) -> tuple[int, int]:
    """(FLOPs, bytes) of one patch_embed call: pixels, weight, bias (and pos_embed, cls_token)
    read once, out (and the B CLS rows) written once."""
    n_patches = (H // p) * (W // p)
    K = C * p * p
    flops = 2 * B * n_patches * D * K
    elems = (B * C * H * W + D * K + D + B * n_patches * D + (n_patches * D if has_pos else 0)
             + ((B + 1) * D if has_cls else 0))
    return flops, elems * itemsize


def patch_embed(pixels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *,
                precision: str = "ieee", pos_embed: torch.Tensor | None = None,
                out: torch.Tensor | None = None, cls_token: torch.Tensor | None = None,
                cls_out: torch.Tensor | None = None) -> torch.Tensor:
    """[B,C,H,W] image -> [B, num_patches, D] via im2col + GEMM; weight in Conv2d layout [D,C,p,p].

    Equals Conv2d(kernel=stride=p) + flatten(2) + transpose(1, 2) (+ pos_embed [NP, D] if given).
    `out` may be any [B, NP, D] view, e.g. `buf[:, 1:]` of a [B, 1+NP, D] token buffer.
    With `cls_token` [D] and `cls_out` [B, D] (e.g. `buf[:, 0]`), every row of cls_out is also set
    to cls_token, in the same launch.
    """
    pixels = check_tensor("pixels", pixels, ndim=4, contiguous_last=False)
    weight = check_tensor("weight", weight, ndim=4, contiguous_last=False)
    if bias is not None:
        bias = check_tensor("bias", bias, ndim=1, contiguous_last=False)
    if pos_embed is not None:
        pos_embed = check_tensor("pos_embed", pos_embed, ndim=2, contiguous_last=False)
    if (cls_token is None) != (cls_out is None):
        raise VitbenchError("cls_token and cls_out go together: give both or neither")
    if cls_token is not None:
        cls_token = check_tensor("cls_token", cls_token, ndim=1, contiguous_last=False)
    dtype = check_same_dtype(pixels=pixels, weight=weight, bias=bias, pos_embed=pos_embed,
                             cls_token=cls_token)
    dot_precision = check_precision(precision, dtype)
    B, C, H, W = pixels.shape
    D, Cw, p, p2 = weight.shape
    if p != p2 or p < 1:
        raise VitbenchError(f"weight has shape {tuple(weight.shape)}; expected a square kernel [D, C, p, p]")
    if Cw != C:
        raise VitbenchError(f"weight has {Cw} input channels (shape {tuple(weight.shape)}); pixels have {C}")
    if H % p or W % p:
        raise VitbenchError(f"pixels {H}x{W} (H x W) is not a multiple of the patch size {p}")
    if bias is not None and bias.shape[0] != D:
        raise VitbenchError(f"bias has shape {tuple(bias.shape)}; expected [{D}] (weight's D)")
    GW = W // p
    NP = (H // p) * GW
    if pos_embed is not None and tuple(pos_embed.shape) != (NP, D):
        raise VitbenchError(f"pos_embed has shape {tuple(pos_embed.shape)}; expected {(NP, D)}")
    out_shape = (B, NP, D)
    if out is None:
        out = torch.empty(out_shape, dtype=dtype, device=pixels.device)
    else:
        out = check_out(out, out_shape, dtype,
                        {"pixels": pixels, "weight": weight, "bias": bias, "pos_embed": pos_embed})
    if cls_token is not None:
        if cls_token.shape[0] != D:
            raise VitbenchError(f"cls_token has shape {tuple(cls_token.shape)}; expected [{D}]")
        inputs = {"pixels": pixels, "weight": weight, "bias": bias, "pos_embed": pos_embed,
                  "cls_token": cls_token}
        cls_out = _common.check_out(cls_out, (B, D), dtype, pixels.device, contiguous_last=False,
                                    name="cls_out", disjoint_from=inputs)
    M, N, K = B * NP, D, C * p * p
    if M == 0 or N == 0:
        return out
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
    _patch_embed_kernel[grid](
        pixels, weight, bias if bias is not None else weight,
        pos_embed if pos_embed is not None else weight, out,
        cls_token if cls_token is not None else weight, cls_out if cls_out is not None else out,
        M, N, K, NP, GW,
        *pixels.stride(), *weight.stride(),
        bias.stride(0) if bias is not None else 0,
        *(pos_embed.stride() if pos_embed is not None else (0, 0)),
        *out.stride(),
        cls_token.stride(0) if cls_token is not None else 0,
        *(cls_out.stride() if cls_out is not None else (0, 0)),
        P=p, HAS_BIAS=bias is not None, HAS_POS=pos_embed is not None, HAS_CLS=cls_token is not None,
        PRECISION=dot_precision,
        **launch_opts(),
    )
    return out
