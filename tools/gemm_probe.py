"""Quick GPU probe: Triton GEMMs and attention vs torch at ViT-B/16 batch-256 shapes (bf16).

A development aid for tuning (not a benchmark of record: `vitbench kernels` is). Checks each
output against torch before timing, and prints ms and TFLOP/s for both.
"""

import sys

import torch
import torch.nn.functional as F
import triton

import vitbench  # noqa: F401
from vitbench.kernels import attention, matmul
from vitbench.numerics import rel_err

B = int(sys.argv[1]) if len(sys.argv) > 1 else 256
M = 197 * B
dt = torch.bfloat16
dev = "cuda"


def bench(fn):
    return triton.testing.do_bench(fn, warmup=100, rep=300, return_mode="median")


def lin(a, w, b, epi, res):
    y = F.linear(a, w, b)
    if "gelu" in epi:
        y = F.gelu(y)
    if "residual" in epi:
        y = y + res
    return y


rows = []
for name, n, k, epi in [("qkv", 2304, 768, "none"), ("proj", 768, 768, "residual"),
                        ("fc1", 3072, 768, "gelu"), ("fc2", 768, 3072, "residual")]:
    a = torch.randn(M, k, device=dev, dtype=dt)
    w = torch.randn(n, k, device=dev, dtype=dt) / k**0.5
    b = torch.randn(n, device=dev, dtype=dt)
    res = torch.randn(M, n, device=dev, dtype=dt) if "residual" in epi else None
    ours = matmul(a, w, b, epilogue=epi, residual=res)
    ref = lin(a.float(), w.float(), b.float(), epi, None if res is None else res.float())
    err = rel_err(ours, ref)
    t_tr = bench(lambda: matmul(a, w, b, epilogue=epi, residual=res))
    t_tl = bench(lambda: F.linear(a, w, b))
    t_tu = bench(lambda: lin(a, w, b, epi, res))
    fl = 2 * M * n * k
    rows.append((name, err, t_tr, t_tl, t_tu, fl / t_tr / 1e9, fl / t_tl / 1e9))

q, kk, v = (torch.randn(B, 12, 197, 64, device=dev, dtype=dt) for _ in range(3))
err = rel_err(attention(q, kk, v), F.scaled_dot_product_attention(q.float(), kk.float(), v.float()))
t_tr = bench(lambda: attention(q, kk, v))
t_sd = bench(lambda: F.scaled_dot_product_attention(q, kk, v))
fl = 4 * B * 12 * 197 * 197 * 64
rows.append(("attn", err, t_tr, t_sd, t_sd, fl / t_tr / 1e9, fl / t_sd / 1e9))

print(f"{torch.cuda.get_device_name()}  batch={B}  bf16")
print(f"{'op':6} {'rel_err':>9} {'triton ms':>10} {'torch ms':>9} {'unfused':>8} {'tr TF/s':>8} {'torch TF/s':>10} {'ratio':>6}")
for name, err, a, b_, c, f1, f2 in rows:
    print(f"{name:6} {err:9.2e} {a:10.3f} {b_:9.3f} {c:8.3f} {f1:8.0f} {f2:10.0f} {c / a:6.2f}")
