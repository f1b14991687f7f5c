"""Per-config timing of the GEMM kernels on the ViT-B/16 GEMMs: where does the time go?

For each GEMM shape and epilogue asked for, runs every TMA config that fits (no autotuning, the
config forced), checks it against float32 torch on a NaN-poisoned output (rel err <= 1e-2, else
the config is reported WRONG and not timed), then times it with `triton.testing.do_bench` (median,
L2 flushed). F.linear (cuBLAS) is timed in the same loop. Output: one line per (shape, epilogue,
config), sorted fastest first, and the best per epilogue. "x cuBLAS" compares with the plain
F.linear (GEMM + bias), also for fused epilogues.

    python tools/epilogue_probe.py                         # fc1 at batch 256: none / gelu / gelu_fit / gelu_erf / gelu_tanh
    python tools/epilogue_probe.py --gemm fc1 proj --batch 32 256
    python tools/epilogue_probe.py --kernel pointer --gemm fc2 --batch 1 --graph
    python tools/epilogue_probe.py --kernel pointer --extra-splits --gemm fc2 qkv --batch 1 --cold
    python tools/epilogue_probe.py --kernel pointer --gemm fc2 --rows 5632 672 --graph   # row-split halves
--kernel pointer: matmul.py's pointer kernel instead, each of its configs and SPLIT_K_CONFIGS forced
(those the autotuner would try at the shape: shared memory, split_k_ok), through its launcher.
--graph: time replays of a CUDA graph (triton's do_bench_cudagraph, L2 not flushed) instead of eager
launches: for few-us kernels, whose eager figure is mostly the host's launch cost. --cold: the same
with L2 flushed before each replayed launch (the flush's own time subtracted), as the weights of a
batch-1 forward arrive from DRAM.
Epilogues "gelu_erf" and "gelu_fit" (TMA kernel only): "gelu" with the erf form (fp32 outputs') or
the fitted form (VITBENCH_FAST_GELU=0) in place of the form the launcher uses for 16-bit outputs
(gelu_hw: one hardware tanh).
--early: residual epilogues also try every config with RES_EARLY (the residual tile loaded before
the K loop). --stagger C [C ...]: every two-programs-per-SM config also with STAGGER = C clock
cycles (the second program of each SM starts that much later, so the two run out of phase).
--two-pass (with --kernel pointer): also the two-pass split-K candidates of the shape
(kernels/matmul_splitk.py `candidates`, each also with fewer shares), tagged "2pass".
--tail: also each config's tail-split variant (its last, partial round of tiles summed in shares of
K; matmul_tma.with_tail_split, tagged "tailN") where it splits at the shape: the A/B of the split.
"""

from __future__ import annotations

import argparse
import sys

import vitbench  # noqa: F401,I001  (first: selects the Triton backend before triton is imported)
import torch
import torch.nn.functional as F
import triton

import dataclasses
import importlib

from vitbench.kernels import _gelu as G
from vitbench.kernels import matmul_splitk as SK
from vitbench.kernels import matmul_tma as T
from vitbench.kernels._common import _FixedConfig, graph_ms
from vitbench.kernels._pdl import launch_opts
from vitbench.numerics import poisoned, rel_err

GEMMS = {"qkv": (2304, 768, ["none"]), "proj": (768, 768, ["residual"]),
         "fc1": (3072, 768, ["none", "gelu", "gelu_fit", "gelu_erf", "gelu_tanh"]), "fc2": (768, 3072, ["residual"])}


MM = importlib.import_module("vitbench.kernels.matmul")  # the module (the package exports the function)
PSEUDO_GELU = {"gelu_erf": G.FORMS["erf"], "gelu_fit": G.FORMS["fit"]}  # "gelu" epilogues with a forced GELU_FORM (TMA kernel only)


def tag(cfg) -> str:
    if isinstance(cfg, SK.TwoPass):
        return cfg.tag
    k = cfg.kwargs
    if "SPLIT_K" in k:  # a pointer-kernel config
        return (f"{k['BLOCK_M']}x{k['BLOCK_N']}x{k['BLOCK_K']} s{cfg.num_stages} w{cfg.num_warps}"
                f" splitk{k['SPLIT_K']}")
    return (f"{k['BLOCK_M']}x{k['BLOCK_N']}x{k['BLOCK_K']} s{cfg.num_stages} w{cfg.num_warps}"
            f"{' split' if k['EPI_SUBTILE'] else ''}{' ws' if k['WARP_SPEC'] else ''} x{k['PER_SM']}"
            f"{' early' if k['RES_EARLY'] else ''}{' stagger' + str(k['STAGGER']) if k['STAGGER'] else ''}"
            f"{' tail' + str(k['TAIL_SPLIT']) if k['TAIL_SPLIT'] > 1 else ''}")


def _with(c: triton.Config, **kw) -> triton.Config:
    return triton.Config({**c.kwargs, **kw}, num_warps=c.num_warps, num_stages=c.num_stages)


def configs(epilogue: str, early: bool, staggers: list[int], per_sm: int | None) -> list[triton.Config]:
    """TMA_CONFIGS (only those with `per_sm` programs per SM when given); with `early`, for a
    residual epilogue each one again with RES_EARLY; each PER_SM=2 one again per STAGGER value."""
    base = [c for c in T.TMA_CONFIGS if per_sm is None or c.kwargs["PER_SM"] == per_sm]
    out = list(base)
    if early and "residual" in epilogue:
        out += [_with(c, RES_EARLY=True) for c in base if not c.kwargs["RES_EARLY"]]
    out += [_with(c, STAGGER=s) for s in staggers if s for c in base
            if c.kwargs["PER_SM"] == 2 and c.kwargs["STAGGER"] != s]
    return out


# --extra-splits: split-K candidates the autotuner does not try (yet), for batch-1/8 probes: more
# programs per GEMM (batch-1 FC2 runs 96 programs at split-K 4 in 12 us, its weights would take
# 1.6 us at the copy bandwidth; docs/performance.md section 4). split_k_ok still applies (at
# K = 768 and BLOCK_K = 64 at most 6 shares).
EXTRA_SPLIT_CONFIGS = [
    MM.matmul_config(64, 128, 64, 4, 4, split=2),
    MM.matmul_config(64, 128, 64, 4, 4, split=8),
    MM.matmul_config(64, 64, 64, 4, 4, split=2),
    MM.matmul_config(64, 32, 64, 4, 4, split=8),
    MM.matmul_config(128, 64, 64, 4, 4, split=8),
    MM.matmul_config(256, 64, 64, 3, 8, split=8),
]


def pointer_configs(M: int, N: int, K: int, itemsize: int, extra: bool = False) -> list[triton.Config]:
    """The pointer kernel's configs (and the split-K ones) autotuning would try at this shape;
    with `extra`, EXTRA_SPLIT_CONFIGS too."""
    def fits(c):
        k = c.kwargs
        return c.num_stages * (k["BLOCK_M"] + k["BLOCK_N"]) * k["BLOCK_K"] * itemsize <= MM._SMEM_BYTES
    pool = MM.GEMM_CONFIGS + MM.SPLIT_K_CONFIGS + (EXTRA_SPLIT_CONFIGS if extra else [])
    return [c for c in pool if fits(c) and MM.split_k_ok(c, M, N, K)]


def run_pointer(cfg, a, w, b, res, out, epilogue, sms):
    fixed = _FixedConfig(MM._heuristic(MM._matmul_kernel), cfg)
    MM._matmul = fixed  # this tool's process only
    MM._matmul_pointer(a, w, b, epilogue=epilogue, residual=res, out=out)


def two_pass_configs(M: int, N: int, K: int, sms: int) -> list:
    """matmul_splitk.candidates at this shape, each also with one share fewer and half the shares."""
    out = []
    for c in SK.candidates(M, N, K, sms):
        for split in dict.fromkeys((c.split, c.split - 1, max(2, c.split // 2))):
            if split >= 2:
                out.append(dataclasses.replace(c, split=split))
    return list(dict.fromkeys(out))


def run_two_pass(cfg, a, w, b, res, out, epilogue, sms):
    SK.matmul_splitk(a, w, b, config=cfg, epilogue=epilogue, residual=res, out=out)


def run_config(cfg, a, w, b, res, out, epilogue, sms):
    M, K = a.shape
    N = w.shape[0]
    r = res if res is not None else out
    # "gelu_erf", "gelu_fit" (this tool only): the "gelu" epilogue with the erf form (fp32 outputs')
    # or the fitted form (16-bit outputs' under VITBENCH_FAST_GELU=0), against "gelu"'s form as the
    # launcher picks it (gelu_hw for 16-bit outputs).
    form = PSEUDO_GELU.get(epilogue, G.gelu_form(out.dtype))
    epilogue = "gelu" if epilogue in PSEUDO_GELU else epilogue
    *ln, ln_consts = MM._ln_args(None, None, M, N, K, a.device)  # no folded layernorm
    ws, counters = MM.split_scratch(*T.tail_scratch_sizes(M, N, K, sms, [cfg]), a.device)
    T._matmul_tma_kernel[T.grid(M, N, K, sms, cfg.kwargs)](
        a, w, b, r, out, *ln[:3], ws, counters, ln[3], M, N, K, a.stride(0), w.stride(0), b.stride(0), r.stride(0), out.stride(0),
        HAS_BIAS=True, EPILOGUE=epilogue, GELU_FORM=form, NUM_SMS=sms, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages, **cfg.kwargs, **ln_consts, **launch_opts())


def reference(a, w, b, epilogue, res):
    y = F.linear(a.float(), w.float(), b.float())
    if epilogue.startswith("gelu"):
        y = F.gelu(y, approximate="tanh" if epilogue == "gelu_tanh" else "none")
    return y + res.float() if res is not None else y


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gemm", nargs="+", choices=list(GEMMS), default=["fc1"], help="ViT-B/16 GEMMs")
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="images (M = 197 * batch; default 256 unless --rows)")
    p.add_argument("--rows", type=int, nargs="+", default=[],
                   help="also GEMMs of these row counts (e.g. the halves of a row split, 5632 672)")
    p.add_argument("--epilogue", nargs="+", default=None,
                   help="only these epilogues (default: each GEMM's own list)")
    p.add_argument("--rep", type=int, default=100, help="do_bench rep (ms per measurement)")
    p.add_argument("--early", action="store_true",
                   help="residual epilogues: also every config with RES_EARLY")
    p.add_argument("--stagger", type=int, nargs="+", default=[],
                   help="also each PER_SM=2 config with these STAGGER values (SM clock cycles)")
    p.add_argument("--per-sm", type=int, choices=[1, 2], default=None,
                   help="only the configs with this many programs per SM")
    p.add_argument("--tail", action="store_true",
                   help="TMA kernel: also each config's tail-split variant where it would split "
                        "(matmul_tma.with_tail_split, the candidates autotuning adds)")
    p.add_argument("--kernel", choices=["tma", "pointer"], default="tma",
                   help="which GEMM kernel's configs to force")
    p.add_argument("--extra-splits", action="store_true",
                   help="--kernel pointer: also EXTRA_SPLIT_CONFIGS (split-K candidates not autotuned)")
    p.add_argument("--two-pass", action="store_true",
                   help="--kernel pointer: also the two-pass split-K candidates (matmul_splitk)")
    p.add_argument("--graph", action="store_true",
                   help="time CUDA-graph replays (no L2 flush) instead of eager launches")
    p.add_argument("--cold", action="store_true",
                   help="time CUDA-graph replays with L2 flushed before each launch (flush time "
                        "subtracted): weights come from DRAM, as inside a batch-1 forward")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("epilogue_probe.py needs a CUDA GPU")
    T._ensure_allocator()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    dev, dt = torch.device("cuda"), torch.bfloat16
    print(f"{torch.cuda.get_device_name()} ({sms} SMs)  bf16  torch {torch.__version__}  triton {triton.__version__}")
    torch.manual_seed(0)
    batches = args.batch if args.batch is not None else ([] if args.rows else [256])
    sizes = [(f"batch {b}", 197 * b) for b in batches] + [(f"rows {m}", m) for m in args.rows]
    for label, M in sizes:
        for name in args.gemm:
            N, K, epilogues = GEMMS[name]
            a = torch.randn(M, K, device=dev, dtype=dt)
            w = torch.randn(N, K, device=dev, dtype=dt) / K ** 0.5
            b = torch.randn(N, device=dev, dtype=dt)
            flops = 2 * M * N * K
            if args.graph or args.cold:
                def bench(fn):
                    return graph_ms(fn, args.rep, cold=args.cold)
            else:
                def bench(fn):
                    return triton.testing.do_bench(fn, rep=args.rep, return_mode="median")
            cublas = bench(lambda: F.linear(a, w, b))
            print(f"\n== {label} {name} M={M} N={N} K={K}: cuBLAS F.linear {cublas:.4f} ms "
                  f"({flops / cublas / 1e9:.1f} TFLOP/s)", flush=True)
            for epi in epilogues:
                if args.epilogue and epi not in args.epilogue:
                    continue
                res = torch.randn(M, N, device=dev, dtype=dt) if "residual" in epi else None
                ref = reference(a, w, b, epi, res)
                rows = []
                if args.kernel == "pointer" and epi in PSEUDO_GELU:
                    continue  # the pointer launcher picks the GELU form by dtype
                if args.kernel == "pointer":
                    cands, launch = pointer_configs(M, N, K, a.element_size(), args.extra_splits), run_pointer
                    if args.two_pass:
                        cands += two_pass_configs(M, N, K, sms)
                else:
                    cands = [c for c in configs(epi, args.early, args.stagger, args.per_sm)
                             if T.fits(c, a.element_size(), "residual" in epi)]  # else pruned
                    if args.tail:
                        cands = T.with_tail_split(cands, M, N, K, sms, split=T.TAIL_SPLIT_MAX)
                    launch = run_config
                for cfg in cands:
                    out = poisoned((M, N), dt, dev)
                    run = run_two_pass if isinstance(cfg, SK.TwoPass) else launch
                    try:
                        run(cfg, a, w, b, res, out, epi, sms)
                        err = rel_err(out, ref)
                        if not err <= 1e-2:
                            print(f"  {epi:9} {tag(cfg):34} WRONG rel_err={err:.2e}", flush=True)
                            continue
                        ms = bench(lambda: run(cfg, a, w, b, res, out, epi, sms))
                    except Exception as e:  # a config that does not compile or launch
                        print(f"  {epi:9} {tag(cfg):34} FAILED {type(e).__name__}: {str(e)[:100]}", flush=True)
                        continue
                    rows.append((ms, tag(cfg)))
                for ms, t in sorted(rows):
                    print(f"  {epi:9} {t:34} {ms:.4f} ms {flops / ms / 1e9:7.1f} TFLOP/s "
                          f"{cublas / ms:6.3f}x cuBLAS", flush=True)
                if rows:
                    print(f"  BEST {epi}: {min(rows)[1]} {min(rows)[0]:.4f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
