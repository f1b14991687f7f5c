"""Jit building blocks shared by the kernels (inlined by Triton: no call overhead).

GEMM kernels (matmul, bmm, patch_embed): the grouped tile order and the strided K loop.
TF32 dots (matmul, bmm, patch_embed, attention): operand rounding to the nearest TF32 value.
Row kernels (layernorm, softmax): the block of rows one program owns.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def grouped_tile(
    pid,  # flat index of the output tile, 0 .. cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N) - 1
    M,  # rows of the output
    N,  # columns of the output
    BLOCK_M: tl.constexpr,  # rows per tile
    BLOCK_N: tl.constexpr,  # columns per tile
    GROUP_M: tl.constexpr,  # row tiles per group
):
    # Grouped ("super-grouped") tile order -> (pid_m, pid_n): walk GROUP_M row tiles down a
    # column of tiles before moving right, so the A rows and B/W columns that neighbouring
    # programs read stay in L2 (each group reuses GROUP_M row panels across its columns).
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (pid // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def round_tf32(x):
    # fp32 -> nearest TF32 value (10-bit mantissa), ties away from zero: what PTX
    # cvt.rna.tf32.f32 does, and what cuBLAS / PyTorch do to fp32 operands of a TF32 GEMM.
    # Why: with input_precision="tf32", tl.dot feeds the raw fp32 bits to the tensor core, which
    # just ignores (truncates) the low 13 mantissa bits; truncation errs by up to 1 TF32 ulp, always
    # towards zero, rounding by half that with no bias, so our TF32 error was ~2x cuBLAS's. Rounding
    # first gives the same operands as cuBLAS (the tensor core then drops only zero bits).
    # How: add half a TF32 ulp (bit 12) to the bit pattern and clear the 13 dropped bits; a carry
    # out of the mantissa bumps the exponent, which is the correct rounding (1.11..1 -> 2.0, and
    # values within half an ulp of FLT_MAX -> inf, as cvt.rna). +-0, +-inf and subnormals come out
    # right by the same arithmetic. NaNs would not (a NaN whose payload sits in the low 13 bits
    # would become inf), so NaNs keep their bits plus the quiet bit (bit 22): still NaN once the
    # tensor core drops the low bits.
    # Cost: add, and, plus the NaN compare/or/select: 5 ALU ops per loaded element, emitted only
    # where tf32_operand asks for it (fp32 operands of a "tf32" dot). On sm_90 the larger cost is
    # structural: tiles now pass through registers, so the B tile is written back to shared
    # memory before each wgmma, the MMA is no longer left in flight across iterations and the
    # pipeline keeps 2 stages instead of 3 (compiled TTGIR, triton 3.6). Measure tf32 speed.
    bits = x.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x1000) & 0xFFFFE000
    bits = tl.where(x != x, bits | 0x400000, rounded)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def tf32_operand(x, PRECISION: tl.constexpr):
    # x rounded to TF32 (round_tf32) if it is an fp32 operand of a PRECISION dot that runs in
    # TF32; unchanged otherwise. Both conditions are compile-time: "ieee" dots and fp16/bf16
    # operands compile exactly as without this call.
    if PRECISION == "tf32":
        if x.dtype == tl.float32:
            x = round_tf32(x)
    return x


@triton.jit
def tf32_rounded(y, TF32_OUT: tl.constexpr):
    # y (a value about to be stored) rounded to TF32 (round_tf32) if TF32_OUT and y is fp32;
    # unchanged otherwise, at no cost (both conditions are compile-time). For outputs whose only
    # consumer is a TF32 GEMM that drops the low mantissa bits of its loads instead of rounding
    # them (matmul_tma's TF32 wgmma reads its tiles straight from shared memory): stored already
    # rounded, they lose nothing there, and the product is the one a rounding GEMM would make.
    if TF32_OUT:
        if y.dtype == tl.float32:
            y = round_tf32(y)
    return y


@triton.jit
def dot_k_loop(
    a_ptrs,  # [BLOCK_M, BLOCK_K] pointers to the first K block of A (rows always valid)
    b_ptrs,  # [BLOCK_K, BLOCK_N] pointers to the first K block of B (columns always valid)
    offs_k,  # [BLOCK_K] tl.arange(0, BLOCK_K), the K offsets the pointers were built from
    K,  # reduction length
    stride_ak,  # elements between consecutive k of A
    stride_bk,  # elements between consecutive k of B
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no K masks
    PRECISION: tl.constexpr,  # tl.dot input_precision (_common.PRECISIONS; ignored for 16-bit)
):
    # acc = A @ B over all of K, fp32. Per iteration: read BLOCK_K*(BLOCK_M + BLOCK_N) elements,
    # 2*BLOCK_M*BLOCK_N*BLOCK_K FLOPs on the tensor cores. K tails read as 0 (add nothing).
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_left = K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        # fp32 + "tf32": round both operands to nearest TF32 (cuBLAS parity; no-op otherwise)
        a = tf32_operand(a, PRECISION)
        b = tf32_operand(b, PRECISION)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    return acc


@triton.jit
def row_block(
    n_rows,  # rows of the [n_rows, n_cols] problem
    BLOCK_M: tl.constexpr,  # rows per program
):
    # (rows, row_ok) of this program: rows as int64 indices (row * stride may pass 2**31),
    # row_ok marks the real ones. Rows past the end re-read the last row (in cache) instead of
    # masking the loads, so no NaN appears; stores must mask with row_ok.
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    rows = tl.minimum(rows, n_rows - 1).to(tl.int64)
    return rows, row_ok


@triton.jit
def split_k_reduce(
    acc,  # this program's fp32 partial [BLOCK_M, BLOCK_N] tile (its share of K)
    ws_ptr,  # fp32 workspace: SPLIT_K partial tiles per output tile, [tiles, SPLIT_K, BLOCK_M*BLOCK_N]
    cnt_ptr,  # int32 arrival counter per output tile: 0 before the launch, reset to 0 by it
    tile,  # flat index of the output tile
    pid_k,  # which share of K this program summed, 0 .. SPLIT_K - 1
    SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # Serial split-K in one launch, deterministic: every program of a tile writes its partial to
    # the workspace and counts itself in; the last to arrive sums the SPLIT_K partials in split
    # order (the same order whichever program is last, so the same bits every run), resets the
    # counter for the next launch and returns (sum, True). The others return (acc, False) and
    # must not store. Ordering: the CTA barrier puts every thread's partial before the counter's
    # release (the pattern of CUTLASS's semaphore); the last program's acquire makes all partials
    # visible before it reads them (.cg: from L2, never a stale L1 line).
    offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    tile_ws = ws_ptr + tile.to(tl.int64) * (SPLIT_K * BLOCK_M * BLOCK_N)
    tl.store(tile_ws + pid_k * (BLOCK_M * BLOCK_N) + offs, acc)
    tl.debug_barrier()
    arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel", scope="gpu")
    last = arrived == SPLIT_K - 1
    if last:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for s in tl.static_range(SPLIT_K):
            acc += tl.load(tile_ws + s * (BLOCK_M * BLOCK_N) + offs, cache_modifier=".cg")
        tl.store(cnt_ptr + tile, 0)
    return acc, last


@triton.jit
def split_reduce(
    acc,  # this program's fp32 partial [BLOCK_M, BLOCK_N] tile (its share of K)
    tile_ws,  # fp32 workspace of this output tile: `shares` partial tiles of BLOCK_M*BLOCK_N
    cnt_ptr,  # int32 arrival counter of this output tile: 0 before, reset to 0 by the last
    share,  # which share of K this program summed, 0 .. shares - 1
    shares,  # programs summing this tile (a run-time value: matmul_tma's tail split)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # split_k_reduce with the share count known only at run time (same protocol, same fixed
    # summation order, so the same bits every run): (sum, True) for the last program to arrive,
    # (acc, False) for the others, which must not store.
    offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    tl.store(tile_ws + share * (BLOCK_M * BLOCK_N) + offs, acc)
    tl.debug_barrier()
    arrived = tl.atomic_add(cnt_ptr, 1, sem="acq_rel", scope="gpu")
    last = arrived == shares - 1
    if last:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for s in range(shares):
            acc += tl.load(tile_ws + s * (BLOCK_M * BLOCK_N) + offs, cache_modifier=".cg")
        tl.store(cnt_ptr, 0)
    return acc, last
