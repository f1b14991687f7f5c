"""How fast can a hand-laid-out Gluon CUDA-core SGEMM go? out = A @ W^T + bias, exact fp32.

A [M, K] and W [N, K] (nn.Linear layout) are both K-contiguous; bias [N]; out [M, N] fp32. Every
product is an fp32 FFMA on the CUDA cores (no tensor cores, no tf32), summed in k order. The kernel
is the classic register-blocked SGEMM: a BM x BN tile per program (grouped tile order for L2
reuse), each thread owning an 8x8 micro-tile of the accumulator made of four 4x4 blocks 64 (or 32)
rows / columns apart, so that the per-k shared-memory reads are conflict-free LDS.128s. A and W
tiles are read from global with 16-byte K-contiguous loads into registers, stored transposed
([BK, BM] / [BK, BN], M / N contiguous) into double-buffered shared memory, and the next K tile's
global loads are issued before the current tile's FMAs (one barrier per K tile). Per k each
thread loads its 8 rows of A and 8 columns of W (4 LDS.128) and does 64 FFMA: 16 FFMA per LDS.
Inner loop `--variant fma`: explicit gl.fma outer products; `dot`: gl.dot_fma on the same shared
tiles (Triton's FMA-dot lowering; same SASS counts, BK >= 16 only).

    python tools/fma_gemm_probe.py --compile   # offline sm_90 build, no GPU: registers, spills, smem,
                                               # CTAs/SM, SASS FFMA / LDS / STS / LDG / BAR counts,
                                               # and vitbench's Triton fp32 "ieee" kernel alongside
    python tools/fma_gemm_probe.py [--batch 32 256] [--config c128x128k8 ...] [--variant fma dot]
                                               # GPU (H100): check, then time

GPU mode: every config is first checked at irregular sizes (row / column / K tails), then per ViT-B/16
shape (M = 197 * batch) on fresh random inputs into a NaN-filled output against a float64
reference: max abs and relative Frobenius error, cuBLAS fp32 (TF32 off) alongside; a config whose
relative error exceeds 1e-5 (or is not finite) anywhere is marked FAIL and not timed. Timings:
triton.testing.do_bench medians (L2 flushed before each call), ms, TFLOP/s and speed relative to
cuBLAS (F.linear, TF32 off), with vitbench's matmul(precision="ieee") (autotuned on its first call,
which takes a while; --no-vitbench skips it).
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "0"  # before triton / vitbench: compiled kernels (--compile has no GPU)

import argparse  # noqa: E402
import collections  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402
import triton  # noqa: E402
from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# name -> (BM, BN, BK, SPT_M, SPT_N, TPW_M, WPC_M, num_warps): the accumulator layout is
# BlockedLayout([SPT_M, SPT_N], [TPW_M, 32 // TPW_M], [WPC_M, warps // WPC_M]); its footprint
# (SPT*TPW*WPC per dim) repeats over the tile, so 4x4 blocks give an 8x8 micro-tile at 128x128.
CONFIGS = {
    "c128x128k8": (128, 128, 8, 4, 4, 4, 4, 8),     # 8x8 per thread, 256 threads
    "c128x128k16": (128, 128, 16, 4, 4, 4, 4, 8),   # 8x8 per thread, 256 threads
    "c128x64k16": (128, 64, 16, 4, 4, 4, 4, 4),     # 8x8 per thread, 128 threads
    "c64x128k16": (64, 128, 16, 4, 4, 4, 2, 4),     # 8x8 per thread, 128 threads
}
GROUP_M = 8
# ViT-B/16 linear layers: name -> (N, K); M = batch * 197
SHAPES = {"qkv": (2304, 768), "proj": (768, 768), "fc1": (3072, 768), "fc2": (768, 3072)}


@gluon.jit
def _k_step(acc, a_cur, w_cur, a_nxt, w_nxt, a_ptrs, w_ptrs, offs_ka, offs_kw, k_left,
            BK: gl.constexpr, USE_DOT: gl.constexpr):
    # One K tile: issue the global loads of the next tile (k < k_left: zeros past K) into registers,
    # multiply the current tile from shared memory (a_cur [BK, BM], w_cur [BK, BN]), then store the
    # next tile transposed into the other buffers and wait for every thread (one barrier per tile).
    acc_l: gl.constexpr = acc.type.layout
    a_reg = gl.load(a_ptrs, mask=gl.expand_dims(offs_ka, 0) < k_left, other=0.0)
    w_reg = gl.load(w_ptrs, mask=gl.expand_dims(offs_kw, 0) < k_left, other=0.0)
    if USE_DOT:  # Triton's FMA dot lowering on [BM, BK] x [BK, BN] operands loaded whole
        a_op = a_cur.permute([1, 0]).load(gl.DotOperandLayout(0, acc_l, 0))
        w_op = w_cur.load(gl.DotOperandLayout(1, acc_l, 0))
        acc = gl.dot_fma(a_op, w_op, acc)
    else:  # per k: this thread's rows of A and columns of W (LDS.128s), outer product by FFMA
        # the tile seen as BK buffers of [BM] / [BN] (a rank-1 layout): .index(k) is row k
        a_rows = a_cur._reinterpret(gl.float32, a_cur.shape, gl.SwizzledSharedLayout(1, 1, 1, [0]))
        w_rows = w_cur._reinterpret(gl.float32, w_cur.shape, gl.SwizzledSharedLayout(1, 1, 1, [0]))
        for k in gl.static_range(BK):
            a_col = a_rows.index(k).load(gl.SliceLayout(1, acc_l))
            w_row = w_rows.index(k).load(gl.SliceLayout(0, acc_l))
            acc = gl.fma(gl.expand_dims(a_col, 1), gl.expand_dims(w_row, 0), acc)
    a_nxt.store(gl.permute(a_reg, [1, 0]))
    w_nxt.store(gl.permute(w_reg, [1, 0]))
    gl.thread_barrier()
    return acc


@gluon.jit
def _fma_gemm_kernel(a_ptr, w_ptr, bias_ptr, out_ptr, M, N, K, stride_am, stride_wn, stride_om,
                     BM: gl.constexpr, BN: gl.constexpr, BK: gl.constexpr, SPT_M: gl.constexpr,
                     SPT_N: gl.constexpr, TPW_M: gl.constexpr, WPC_M: gl.constexpr,
                     GROUP: gl.constexpr, USE_DOT: gl.constexpr, num_warps: gl.constexpr):
    acc_l: gl.constexpr = gl.BlockedLayout([SPT_M, SPT_N], [TPW_M, 32 // TPW_M], [WPC_M, num_warps // WPC_M],
                                           [1, 0])
    # global tile loads [rows, BK]: 4 consecutive k (16 bytes) per load, rows*BK/(128*warps) rows per
    # thread (contiguous: stored transposed, those become 8- or 16-byte STS)
    ld_a: gl.constexpr = gl.BlockedLayout([BM * BK // (128 * num_warps), 4], [32 // (BK // 4), BK // 4],
                                          [num_warps, 1], [1, 0])
    ld_w: gl.constexpr = gl.BlockedLayout([BN * BK // (128 * num_warps), 4], [32 // (BK // 4), BK // 4],
                                          [num_warps, 1], [1, 0])
    # shared tiles [BK, rows], rows contiguous, no swizzle
    smem_l: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])

    # grouped tile order: GROUP row tiles share each W column tile in L2
    pid = gl.program_id(0)
    num_pid_m = gl.cdiv(M, BM)
    num_pid_n = gl.cdiv(N, BN)
    in_group = GROUP * num_pid_n
    first_m = (pid // in_group) * GROUP
    size_m = gl.minimum(num_pid_m - first_m, GROUP)
    pid_m = first_m + (pid % in_group) % size_m
    pid_n = (pid % in_group) // size_m

    # rows / cols past M / N wrap onto valid ones for the loads (masked at the store); int64 offsets
    rm = (pid_m * BM + gl.arange(0, BM, layout=gl.SliceLayout(1, ld_a))) % M
    rn = (pid_n * BN + gl.arange(0, BN, layout=gl.SliceLayout(1, ld_w))) % N
    offs_ka = gl.arange(0, BK, layout=gl.SliceLayout(0, ld_a))
    offs_kw = gl.arange(0, BK, layout=gl.SliceLayout(0, ld_w))
    a_ptrs = a_ptr + gl.expand_dims(rm.to(gl.int64) * stride_am, 1) + gl.expand_dims(offs_ka, 0)
    w_ptrs = w_ptr + gl.expand_dims(rn.to(gl.int64) * stride_wn, 1) + gl.expand_dims(offs_kw, 0)

    # double buffer as four separate allocations: Triton's barrier analysis then sees no hazard
    # between reading one and filling the other (with one [2, ...] allocation it adds a second
    # barrier per K tile)
    a_s0 = gl.allocate_shared_memory(gl.float32, [BK, BM], smem_l)
    a_s1 = gl.allocate_shared_memory(gl.float32, [BK, BM], smem_l)
    w_s0 = gl.allocate_shared_memory(gl.float32, [BK, BN], smem_l)
    w_s1 = gl.allocate_shared_memory(gl.float32, [BK, BN], smem_l)

    a_s0.store(gl.permute(gl.load(a_ptrs, mask=gl.expand_dims(offs_ka, 0) < K, other=0.0), [1, 0]))
    w_s0.store(gl.permute(gl.load(w_ptrs, mask=gl.expand_dims(offs_kw, 0) < K, other=0.0), [1, 0]))
    gl.thread_barrier()

    acc = gl.zeros([BM, BN], gl.float32, acc_l)
    # two K tiles per trip (buffers 0 then 1); an odd tile count runs one all-zero tile more
    for k0 in range(0, K, 2 * BK):
        a_ptrs += BK
        w_ptrs += BK
        acc = _k_step(acc, a_s0, w_s0, a_s1, w_s1, a_ptrs, w_ptrs, offs_ka, offs_kw, K - k0 - BK, BK,
                       USE_DOT)
        a_ptrs += BK
        w_ptrs += BK
        acc = _k_step(acc, a_s1, w_s1, a_s0, w_s0, a_ptrs, w_ptrs, offs_ka, offs_kw, K - k0 - 2 * BK, BK,
                       USE_DOT)

    # epilogue: + bias, masked store
    om = pid_m * BM + gl.arange(0, BM, layout=gl.SliceLayout(1, acc_l))
    on = pid_n * BN + gl.arange(0, BN, layout=gl.SliceLayout(0, acc_l))
    bias = gl.load(bias_ptr + on, mask=on < N, other=0.0)
    acc = acc + gl.expand_dims(bias, 0)
    o_ptrs = out_ptr + gl.expand_dims(om.to(gl.int64) * stride_om, 1) + gl.expand_dims(on, 0)
    gl.store(o_ptrs, acc, mask=(gl.expand_dims(om, 1) < M) & (gl.expand_dims(on, 0) < N))


def fma_linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, config: str, use_dot: bool = False,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """out = a @ w.T + bias on the Gluon FMA kernel; a [M, K], w [N, K], bias [N], all fp32, CUDA,
    K-contiguous (bias contiguous)."""
    bm, bn, bk, spt_m, spt_n, tpw_m, wpc_m, warps = CONFIGS[config]
    M, K = a.shape
    N = w.shape[0]
    assert a.is_cuda and a.dtype == w.dtype == bias.dtype == torch.float32, "fp32 CUDA tensors"
    assert a.dim() == w.dim() == 2 and w.shape[1] == K and tuple(bias.shape) == (N,), (a.shape, w.shape)
    assert a.stride(1) == 1 and w.stride(1) == 1 and bias.is_contiguous(), "K-contiguous operands"
    if out is None:
        out = torch.empty((M, N), dtype=torch.float32, device=a.device)
    assert tuple(out.shape) == (M, N) and out.stride(1) == 1 and out.dtype == torch.float32
    if M == 0 or N == 0:
        return out
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
    _fma_gemm_kernel[grid](a, w, bias, out, M, N, K, a.stride(0), w.stride(0), out.stride(0),
                           BM=bm, BN=bn, BK=bk, SPT_M=spt_m, SPT_N=spt_n, TPW_M=tpw_m, WPC_M=wpc_m,
                           GROUP=GROUP_M, USE_DOT=use_dot, num_warps=warps)
    return out


# --------------------------------------------------------------------------- offline build (--compile)
SASS_OP = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")


def sass_counts(source, num_warps: int, num_stages: int) -> collections.Counter:
    """Static SASS opcode counts (whole kernel) of `source` built for sm_90a: triton.compile (a cache
    hit after _sm90.build), the bundled ptxas, cuobjdump."""
    import _sm90
    from triton.backends.compiler import GPUTarget

    k = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": num_warps, "num_stages": num_stages})
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "k.ptx"), "w") as f:
            f.write(k.asm["ptx"])
        subprocess.run([_sm90.PTXAS, "-arch=sm_90a", os.path.join(d, "k.ptx"), "-o", os.path.join(d, "k.cubin")],
                       capture_output=True, text=True, check=True)
        sass = subprocess.run([_sm90.CUOBJDUMP, "-sass", os.path.join(d, "k.cubin")],
                              capture_output=True, text=True, check=True).stdout
    return collections.Counter(SASS_OP.findall(sass))


def _ctas_per_sm(regs: int, threads: int, smem: int) -> int:
    """Resident CTAs per H100 SM: 64K registers (allocated per warp in units of 256, i.e. 8 per
    thread), 228 KB shared memory (1 KB reserved per CTA), 2048 threads, 32 CTAs."""
    by_regs = 65536 // (-(-regs // 8) * 8 * threads)
    return min(by_regs, (228 * 1024) // (smem + 1024), 2048 // threads, 32)


def _row(label: str, r: dict, ops: collections.Counter, threads: int) -> bool:
    lds = {o: n for o, n in ops.items() if o.startswith("LDS")}
    n_lds = sum(lds.values())
    ffma = ops["FFMA"]
    sts = sum(n for o, n in ops.items() if o.startswith("STS"))
    ldg = sum(n for o, n in ops.items() if o.startswith("LDG"))
    bar = sum(n for o, n in ops.items() if o.startswith("BAR"))
    ok = r["spill_st"] == 0 and r["spill_ld"] == 0
    print(f"{label:<30} {r['regs']:>4} {r['spill_st']:>3}/{r['spill_ld']:<3} {r['smem']:>6} "
          f"{_ctas_per_sm(r['regs'], threads, r['smem']):>4} {ffma:>6} {n_lds:>5} "
          f"{ffma / max(n_lds, 1):>6.1f} {sts:>4} {ldg:>4} {bar:>3}  "
          + " ".join(f"{o}={n}" for o, n in sorted(lds.items())) + ("" if ok else "  <-- SPILLS"), flush=True)
    return ok


def compile_all(configs: list[str], variants: list[str], triton_ref: bool) -> int:
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import _sm90
    from triton.compiler import ASTSource
    from triton.experimental.gluon._runtime import GluonASTSource

    bad = 0
    print(f"{'config':<30} regs spill st/ld  smem CTA/SM   FFMA   LDS FFMA/LDS  STS  LDG bar  LDS by width")
    names = _fma_gemm_kernel.arg_names
    for name in configs:
        bm, bn, bk, spt_m, spt_n, tpw_m, wpc_m, warps = CONFIGS[name]
        for variant in variants:
            consts = dict(BM=bm, BN=bn, BK=bk, SPT_M=spt_m, SPT_N=spt_n, TPW_M=tpw_m, WPC_M=wpc_m,
                          GROUP=GROUP_M, USE_DOT=variant == "dot", num_warps=warps)
            sig = {n: "constexpr" if n in consts else "*fp32" if n.endswith("_ptr") else "i32" for n in names}
            # as the GPU launch specialises them at ViT shapes: 16-byte aligned pointers, N, K, strides
            attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n.endswith("_ptr")
                     or n in ("N", "K", "stride_am", "stride_wn", "stride_om")}
            label = f"{name} {variant} w{warps}"
            if variant == "dot" and bk < 16:
                print(f"{label:<30} skipped: gl.dot_fma needs K >= 16")
                continue
            try:
                r = _sm90.build(_fma_gemm_kernel, sig, consts, attrs, warps, 1, source=GluonASTSource)
                ops = sass_counts(GluonASTSource(fn=_fma_gemm_kernel, signature=sig, constexprs=consts,
                                                 attrs=attrs), warps, 1)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"{label:<30} FAILED {type(exc).__name__}: {str(exc)[:800]}")
                bad += 1
                continue
            bad += not _row(label, r, ops, 32 * warps)
    if triton_ref:  # vitbench's Triton kernel (tl.dot, input_precision "ieee"), fp32, bias, no epilogue
        import importlib

        from vitbench.kernels import _gelu
        vm = importlib.import_module("vitbench.kernels.matmul")  # the package exports matmul(), the function

        fn = vm._matmul_kernel
        for cfg in vm.FP32_CONFIGS[:2]:
            kw = cfg.kwargs
            consts = {"HAS_BIAS": True, "EPILOGUE": "none", "GELU_FORM": _gelu.FORMS["erf"], "LN_FOLD": False,
                      "LN_CP2": 1, "ROW_STATS": False, "PRECISION": "ieee", "EVEN_K": True, "PDL": False,
                      # unit strides: the launch specialises ints equal to 1 as constexprs
                      "stride_ak": 1, "stride_wk": 1, "stride_bias": 1, "stride_on": 1, **kw}
            sig = {n: "constexpr" if n in consts else "*i32" if n == "cnt_ptr" else "*fp32" if n.endswith("_ptr")
                   else "fp32" if n == "ln_eps" else "i32" for n in fn.arg_names}
            attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
                     if sig[n] != "constexpr" and n not in ("M", "rows_inner", "ln_eps")}
            label = (f"triton ieee {kw['BLOCK_M']}x{kw['BLOCK_N']}x{kw['BLOCK_K']} s{cfg.num_stages} "
                     f"w{cfg.num_warps}")
            try:
                r = _sm90.build(fn, sig, consts, attrs, cfg.num_warps, cfg.num_stages)
                ops = sass_counts(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                                  cfg.num_warps, cfg.num_stages)
            except Exception as exc:  # noqa: BLE001 - reference only
                print(f"{label:<30} FAILED {type(exc).__name__}: {str(exc)[:400]}")
                continue
            _row(label, r, ops, 32 * cfg.num_warps)
    return 1 if bad else 0


# --------------------------------------------------------------------------- GPU mode
DEVICE = "cuda"
TOL = 1e-5  # relative Frobenius error vs float64 above which a config FAILs (and is not timed)
# irregular sizes first: row / column tails, K tails (K % BK != 0, odd K-tile counts, unaligned rows)
CHECK_SHAPES = ((1000, 200, 136), (257, 776, 770), (333, 100, 20), (130, 129, 8))


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max abs error, relative Frobenius error) against the float64 reference; inf when not finite."""
    if not torch.isfinite(out).all():
        return float("inf"), float("inf")
    d = out.double() - ref
    return float(d.abs().max()), float(d.norm() / ref.norm().clamp_min(1e-300))


def inputs(M: int, N: int, K: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    a = torch.randn(M, K, device=DEVICE, generator=g)
    w = torch.randn(N, K, device=DEVICE, generator=g) / K ** 0.5
    b = torch.randn(N, device=DEVICE, generator=g)
    ref = torch.addmm(b.double(), a.double(), w.double().T)
    return a, w, b, ref


def check(M: int, N: int, K: int, keys: list, a, w, b, ref) -> dict:
    """keys: (config, variant) pairs -> (max abs, rel Frobenius, ok) each, plus 'cublas'."""
    res = {"cublas": errors(torch.nn.functional.linear(a, w, b), ref) + (True,)}
    for cfg, variant in keys:
        out = torch.full((M, N), float("nan"), device=DEVICE)
        try:
            fma_linear(a, w, b, cfg, variant == "dot", out=out)
            torch.cuda.synchronize()
            mx, rel = errors(out, ref)
        except Exception as exc:  # noqa: BLE001 - reported, config dropped
            print(f"  {cfg} {variant} at {M}x{N}x{K}: {type(exc).__name__}: {str(exc)[:400]}")
            mx = rel = float("inf")
        res[(cfg, variant)] = (mx, rel, rel <= TOL)
    return res


def gpu_main(args) -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: the default mode needs an H100 (use --compile for the offline build)")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    from vitbench.kernels import _common
    from vitbench.kernels.matmul import matmul as vb_matmul

    print(f"GPU {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}  "
          f"CUDA {torch.version.cuda}")
    keys = [(c, v) for c in args.config for v in args.variant if not (v == "dot" and CONFIGS[c][2] < 16)]
    alive = set(keys)
    print("correctness at irregular shapes (rel. Frobenius error vs float64; cuBLAS fp32 alongside):")
    for i, (M, N, K) in enumerate(CHECK_SHAPES):
        res = check(M, N, K, keys, *inputs(M, N, K, 100 + i))
        line = " ".join(f"{c}/{v}={res[(c, v)][1]:.1e}{'' if res[(c, v)][2] else ' FAIL'}" for c, v in keys)
        print(f"  {M}x{N}x{K}: cublas={res['cublas'][1]:.1e} {line}", flush=True)
        alive -= {k for k in keys if not res[k][2]}
    print(f"\n{'shape':<20} {'kernel':<22} {'max abs':>8} {'rel frob':>8} {'ms':>8} {'TFLOP/s':>7} {'/cuBLAS':>7}")
    for batch in args.batch:
        M = batch * 197
        for si, (shape, (N, K)) in enumerate(SHAPES.items()):
            a, w, b, ref = inputs(M, N, K, 1000 * batch + si)
            res = check(M, N, K, keys, a, w, b, ref)
            flops = 2 * M * N * K
            tag = f"b{batch} {shape} {M}x{N}x{K}"

            def bench(fn):
                return triton.testing.do_bench(fn, warmup=args.warmup, rep=args.rep, return_mode="median")

            t_cub = bench(lambda: torch.nn.functional.linear(a, w, b))
            rows = [("cublas (TF32 off)", res["cublas"], t_cub)]
            if not args.no_vitbench:
                vb_out = vb_matmul(a, w, b, precision="ieee")  # first call autotunes
                torch.cuda.synchronize()
                rows.append(("vitbench ieee", errors(vb_out, ref) + (True,),
                             bench(lambda: vb_matmul(a, w, b, precision="ieee"))))
            out = torch.empty(M, N, device=DEVICE)
            for cfg, variant in keys:
                e = res[(cfg, variant)]
                ok = e[2] and (cfg, variant) in alive
                t = bench(lambda: fma_linear(a, w, b, cfg, variant == "dot", out=out)) if ok else None
                rows.append((f"{cfg} {variant}", e, t))
            for name, (mx, rel, ok), t in rows:
                timing = (f"{t:>8.4f} {flops / t * 1e-9:>7.2f} {t_cub / t:>7.3f}" if t is not None
                          else f"{'FAIL':>8}")
                print(f"{tag:<20} {name:<22} {mx:>8.1e} {rel:>8.1e} {timing}", flush=True)
    if not args.no_vitbench:
        print("\nvitbench autotune picks:\n  " + "\n  ".join(p for p in _common.autotune_picks() if "float32" in p))
    return 0 if alive == set(keys) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compile", action="store_true", help="offline sm_90 build only (no GPU needed)")
    p.add_argument("--config", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--variant", nargs="+", choices=["fma", "dot"], default=["fma", "dot"],
                   help="inner loop: explicit gl.fma outer products, or gl.dot_fma (BK >= 16)")
    p.add_argument("--batch", nargs="+", type=int, default=[32], help="ViT-B/16 batch sizes (M = 197 * batch)")
    p.add_argument("--no-vitbench", action="store_true", help="skip vitbench's matmul (its autotuning)")
    p.add_argument("--no-triton-ref", action="store_true", help="--compile: skip vitbench's Triton kernel")
    p.add_argument("--warmup", type=int, default=25, help="do_bench warmup (ms)")
    p.add_argument("--rep", type=int, default=100, help="do_bench repetition time (ms)")
    args = p.parse_args()
    if args.compile:
        return compile_all(args.config, args.variant, not args.no_triton_ref)
    return gpu_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
