"""Probe of vitbench.kernels.attention_fma, the exact fp32 flash attention on the CUDA cores in Gluon
(its design: that module's docstring), against torch SDPA fp32 and vitbench's Triton attention
(precision="ieee": Triton's FMA lowering of tl.dot).

    python tools/fma_attention_probe.py --compile   # offline sm_90 build, no GPU: registers, spills,
                                                    # smem, CTAs/SM, SASS FFMA / LDS / STS / MUFU / BAR
    python tools/fma_attention_probe.py [--batch 32 256] [--config m64n64w4 ...]   # GPU: check, time

Configs: the package's (attention_fma.CANDIDATES, timed per shape by attention()) and m64n64w4v,
probe-only. Offline sm_90 build (--compile, triton 3.6.0), spill-free in every config: d 64
m128n64w8 127 registers, m128n64w8v 128, m64n32w4v 123, m64n64w4 128, m64n64w4v 168; d 32 95-127.
Three BAR per kernel (one before the loop, two in it). Dropped from the package after its H200 run:
m128n64w4v (8x8 per thread, 254 registers, 0.47x SDPA).

GPU mode: every config is checked first at irregular shapes (T in 1, 5, 64, 65, 197, 300; the
CLS row alone against 197 keys; strided fused-QKV views; NaN-filled outputs, contiguous and
[B, T, H, d]-permuted) against float64, torch SDPA fp32 (TF32 off) alongside; rel. Frobenius
error > 1e-5 (or not finite) is FAIL, not timed. Then ViT-B/16 attention (H 12, T 197, d 64,
fused-QKV views) per --batch: triton.testing.do_bench medians of SDPA (default choice, and the
EFFICIENT_ATTENTION / MATH backends forced), vitbench's attention(precision="ieee") on its Triton
kernel (VITBENCH_FMA=0), attention() as it routes the call (VITBENCH_FMA=1: the first call times
the candidates; its pick is printed) and each Gluon config: ms, TFLOP/s (4*B*H*T*T*d) and speed /
best SDPA. First run (H200, triton 3.6): m128n64w8 0.97-0.98x SDPA (1.51 ms at batch 256),
m64n32w4v 0.96x, m64n64w4 0.86-0.88x, the Triton kernel 0.49-0.51x; every config within 3.7e-7
of float64.
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "0"  # before triton / vitbench: compiled kernels (--compile has no GPU)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from vitbench.kernels import _dispatch  # noqa: E402
from vitbench.kernels import attention_fma as af  # noqa: E402

# name -> an attention_fma config (BLOCK_M, BLOCK_N, num_warps, V_AHEAD, maxnreg): the package's,
# then the probe-only ones
CONFIGS = dict(af.CANDIDATES)
CONFIGS["m64n64w4v"] = (64, 64, 4, True, None)
HEAD_DIMS = tuple(reversed(af.HEAD_DIMS))  # 64 first: ViT-B/16's


def fma_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor | None = None,
                  config: str = "m128n64w8") -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v on attention_fma's kernel with config `config` (a CONFIGS name)."""
    assert af.fma_attention_eligible(q, k, v, out), "not eligible for attention_fma"
    return af.attention_fma(q, k, v, out=out, config=CONFIGS[config])


# --------------------------------------------------------------------------- offline build (--compile)
def compile_all(configs: list[str], head_dims: list[int]) -> int:
    import _sm90
    from fma_gemm_probe import _ctas_per_sm, sass_counts
    from triton.experimental.gluon._runtime import GluonASTSource

    fn = af._fma_attn_kernel
    names = fn.arg_names
    bad = 0
    print(f"{'config':<16} regs spill st/ld  smem CTA/SM   FFMA   LDS FFMA/LDS  STS  LDG MUFU bar  LDS/STS by width")
    for name in configs:
        bm, bn, warps, v_ahead, maxnreg = CONFIGS[name]
        for d in head_dims:
            consts = dict(BLOCK_M=bm, BLOCK_N=bn, HEAD_D=d, V_AHEAD=v_ahead, num_warps=warps)
            sig = {n: "constexpr" if n in consts else "*fp32" if n.endswith("_ptr") else
                   "fp32" if n == "qk_scale" else "i32" for n in names}
            # as the launch specialises them at ViT shapes: 16-byte aligned pointers, strides % 16 == 0
            attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
                     if n.endswith("_ptr") or n.startswith("stride_")}
            label = f"{name} d{d}"
            try:
                r = _sm90.build(fn, sig, consts, attrs, warps, 1, source=GluonASTSource, maxnreg=maxnreg)
                ops = sass_counts(GluonASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs), warps, 1,
                                  maxnreg)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"{label:<16} FAILED {type(exc).__name__}: {str(exc)[:1500]}")
                bad += 1
                continue

            def n_of(prefix):
                return sum(n for o, n in ops.items() if o.startswith(prefix))
            widths = " ".join(f"{o}={n}" for o, n in sorted(ops.items()) if o.startswith(("LDS", "STS")))
            ok = r["spill_st"] == 0 and r["spill_ld"] == 0
            print(f"{label:<16} {r['regs']:>4} {r['spill_st']:>3}/{r['spill_ld']:<3} {r['smem']:>6} "
                  f"{_ctas_per_sm(r['regs'], 32 * warps, r['smem']):>4} {ops['FFMA']:>6} {n_of('LDS'):>5} "
                  f"{ops['FFMA'] / max(n_of('LDS'), 1):>6.1f} {n_of('STS'):>4} {n_of('LDG'):>4} "
                  f"{n_of('MUFU'):>4} {n_of('BAR'):>3}  {widths}" + ("" if ok else "  <-- SPILLS"), flush=True)
            bad += not ok
    return 1 if bad else 0


# --------------------------------------------------------------------------- GPU mode
DEVICE = "cuda"
TOL = 1e-5  # relative Frobenius error vs float64 above which a config FAILs (and is not timed)
# (B, H, T_q, T, d): ragged query and key ends, one key, several key blocks, the CLS row alone
# (T_q 1: q[:, :, :1] against all T keys, as the model's last layer); then d = 32
CHECK_SHAPES = ((2, 3, 1, 1, 64), (1, 2, 5, 5, 64), (2, 2, 64, 64, 64), (1, 3, 65, 65, 64),
                (2, 3, 197, 197, 64), (2, 3, 1, 197, 64), (1, 2, 300, 300, 64), (2, 2, 65, 65, 32),
                (1, 3, 197, 197, 32), (2, 3, 1, 197, 32))


def qkv_views(B: int, H: int, T: int, d: int, seed: int):
    """q, k, v as vitbench passes them: [B, H, T, d] views of one fused [B, T, 3*H*d] QKV buffer."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    qkv = torch.randn(B, T, 3 * H * d, device=DEVICE, generator=g)
    return qkv.view(B, T, 3, H, d).permute(2, 0, 3, 1, 4)


def reference(q, k, v) -> torch.Tensor:
    q, k, v = q.double(), k.double(), v.double()
    return torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1) @ v


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(out).all():
        return float("inf")
    return float((out.double() - ref).norm() / ref.norm().clamp_min(1e-300))


def nan_out(B: int, H: int, T: int, d: int, permuted: bool) -> torch.Tensor:
    """A NaN-filled [B, H, T, d] output: contiguous, or a [B, T, H, d] buffer permuted (as vitbench's)."""
    if permuted:
        return torch.full((B, T, H, d), float("nan"), device=DEVICE).permute(0, 2, 1, 3)
    return torch.full((B, H, T, d), float("nan"), device=DEVICE)


def run_checked(cfg: str, q, k, v, ref, permuted: bool) -> float:
    try:
        out = fma_attention(q, k, v, nan_out(*q.shape, permuted), cfg)
        torch.cuda.synchronize()
        return rel_error(out, ref)
    except Exception as exc:  # noqa: BLE001 - reported, config dropped
        print(f"  {cfg} at {tuple(q.shape)}: {type(exc).__name__}: {str(exc)[:600]}", flush=True)
        return float("inf")


@contextlib.contextmanager
def fma_setting(value: str):
    """VITBENCH_FMA=value for the block: "0" keeps attention() on its Triton kernel, "1" lets it
    time and route to attention_fma."""
    old = os.environ.get("VITBENCH_FMA")
    os.environ["VITBENCH_FMA"] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ["VITBENCH_FMA"]
        else:
            os.environ["VITBENCH_FMA"] = old


def sdpa_variants() -> dict:
    """name -> fn(q, k, v): SDPA's default choice and each backend forced (those that exist)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def forced(backend):
        def fn(q, k, v):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v)
        return fn
    return {"sdpa": F.scaled_dot_product_attention, "sdpa-efficient": forced(SDPBackend.EFFICIENT_ATTENTION),
            "sdpa-math": forced(SDPBackend.MATH)}


def sdpa_kernel_names(q, k, v) -> str:
    """The CUDA kernels one default SDPA call launches (torch.profiler), for the record."""
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            F.scaled_dot_product_attention(q, k, v)
            torch.cuda.synchronize()
        names = sorted({e.name for e in prof.events() if e.device_type.name == "CUDA"})
        return "; ".join(n[:90] for n in names) or "?"
    except Exception as exc:  # noqa: BLE001 - informational only
        return f"? ({type(exc).__name__})"


def gpu_main(args) -> int:
    from fma_gemm_probe import exact_fp32_cuda

    if not exact_fp32_cuda():
        return 2
    from vitbench.kernels.attention import attention as vb_attention

    print(f"GPU {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}  "
          f"CUDA {torch.version.cuda}", flush=True)
    configs = list(args.config)
    alive = set(configs)
    print("correctness (rel. Frobenius error vs float64; torch SDPA fp32 alongside; out NaN-filled, "
          "[B,T,H,d]-permuted at odd T):")
    for i, (B, H, T_q, T, d) in enumerate(s for s in CHECK_SHAPES if s[4] in args.head_dim):
        q, k, v = qkv_views(B, H, T, d, 100 + i)
        q = q[:, :, :T_q]
        ref = reference(q, k, v)
        errs = {c: run_checked(c, q, k, v, ref, T % 2 == 1) for c in configs}
        bad = {c for c, e in errs.items() if not e <= TOL}
        alive -= bad
        line = " ".join(f"{c}={e:.1e}{' FAIL' if c in bad else ''}" for c, e in errs.items())
        rows = f"T{T}" if T_q == T else f"T_q{T_q} T{T}"
        print(f"  B{B} H{H} {rows} d{d}: sdpa={rel_error(F.scaled_dot_product_attention(q, k, v), ref):.1e} "
              f"{line}", flush=True)

    H, T, d = 12, 197, 64
    print(f"\n{'shape':<18} {'kernel':<16} {'rel frob':>8} {'ms':>8} {'TFLOP/s':>7} {'/sdpa':>6}")
    for bi, B in enumerate(args.batch):
        q, k, v = qkv_views(B, H, T, d, 1000 + bi)
        ref = reference(q, k, v) if B <= 64 else None  # float64 at B 256 would take seconds; checked at 32
        flops = 4 * B * H * T * T * d
        tag = f"b{B} h{H} t{T} d{d}"

        def bench(fn):
            return triton.testing.do_bench(fn, warmup=args.warmup, rep=args.rep, return_mode="median")

        rows = []
        for name, fn in sdpa_variants().items():
            try:
                err = rel_error(fn(q, k, v), ref) if ref is not None else float("nan")
                rows.append((name, err, bench(lambda: fn(q, k, v))))
            except Exception as exc:  # noqa: BLE001 - a backend that can't run this: skipped
                print(f"{tag:<18} {name:<16} skipped: {type(exc).__name__}: {str(exc)[:200]}")
        # attention() on its Triton kernel (VITBENCH_FMA=0), then as it routes the call (=1)
        for name, setting in (("vitbench-ieee", "0"), ("vitbench-auto", "1")):
            if args.no_vitbench:
                break
            try:
                with fma_setting(setting):
                    vb_out = vb_attention(q, k, v, precision="ieee")  # the first call autotunes / times
                    torch.cuda.synchronize()
                    err = rel_error(vb_out, ref) if ref is not None else float("nan")
                    rows.append((name, err, bench(lambda: vb_attention(q, k, v, precision="ieee"))))
            except Exception as exc:  # noqa: BLE001 - reported; the Gluon rows matter more
                print(f"{tag:<18} {name:<16} failed: {type(exc).__name__}: {str(exc)[:300]}")
        picks = [p for key, p in _dispatch.choices().items() if key[0] == "attention_fma" and key[1] == tuple(q.shape)]
        out = nan_out(B, H, T, d, True)
        for cfg in configs:
            err = run_checked(cfg, q, k, v, ref, True) if ref is not None else float("nan")
            ok = cfg in alive and (ref is None or err <= TOL)
            rows.append((cfg, err, bench(lambda: fma_attention(q, k, v, out, cfg)) if ok else None))
        best = min((t for n, _, t in rows if n.startswith("sdpa") and t is not None), default=None)
        for name, err, t in rows:
            timing = (f"{t:>8.4f} {flops / t * 1e-9:>7.2f} {best / t if best else float('nan'):>6.3f}"
                      if t is not None else f"{'FAIL':>8}")
            print(f"{tag:<18} {name:<16} {err:>8.1e} {timing}", flush=True)
        if picks:
            print(f"{tag:<18} vitbench-auto picked {', '.join(picks)}", flush=True)
        print(f"{tag:<18} sdpa default runs: {sdpa_kernel_names(q, k, v)}", flush=True)
    return 0 if alive == set(configs) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compile", action="store_true", help="offline sm_90 build only (no GPU needed)")
    p.add_argument("--config", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--head-dim", nargs="+", type=int, choices=HEAD_DIMS, default=list(HEAD_DIMS),
                   help="head dims to build (--compile) / check (GPU; timing is at d 64)")
    p.add_argument("--batch", nargs="+", type=int, default=[32, 256], help="ViT-B/16 batch sizes")
    p.add_argument("--no-vitbench", action="store_true", help="skip vitbench's attention (its autotuning)")
    p.add_argument("--warmup", type=int, default=25, help="do_bench warmup (ms)")
    p.add_argument("--rep", type=int, default=100, help="do_bench repetition time (ms)")
    args = p.parse_args()
    if args.compile:
        return compile_all(args.config, args.head_dim)
    return gpu_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
