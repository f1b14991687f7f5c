"""Per op of the kernel sweep: inputs, float64 reference, our Triton call, the user's PyTorch.

Every `OpImpl` function takes the shape dict `s` (parameters of `kernel_specs.OP_SPECS`) and the
options dict `o`; inputs are a tuple of tensors `args`. `torch_fn(s, o)` returns a pure function
of `args` (what `torch` runs eagerly and `torch-compile` compiles). Costs come from the kernel
files (`<op>_cost`: FLOPs and bytes with each input read once and each output written once).
`size` is the x-axis number of a case (elements for elementwise ops, rows for GEMMs, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from vitbench import kernels as K
from vitbench.kernels._common import round_tf32_
from vitbench.kernels.add import add_cost
from vitbench.kernels.attention import attention_cost
from vitbench.kernels.bmm import bmm_cost
from vitbench.kernels.layernorm import layernorm_cost
from vitbench.kernels.matmul import matmul_cost
from vitbench.kernels.patch_embed import patch_embed_cost
from vitbench.kernels.softmax import softmax_cost

Args = tuple[torch.Tensor | None, ...]


@dataclass(frozen=True)
class OpImpl:
    inputs: Callable[[dict, dict, torch.dtype, torch.device], Args]
    reference: Callable[[dict, dict, Args], torch.Tensor]  # float64
    triton: Callable[[dict, dict, str, Args], torch.Tensor]  # (s, o, precision, args)
    torch_fn: Callable[[dict, dict], Callable[..., torch.Tensor]]
    cost: Callable[[dict, dict, int], tuple[int, int]]  # (s, o, itemsize) -> (flops, bytes)
    size: Callable[[dict], int]


def _r(shape, dtype, dev, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return (torch.randn(shape, dtype=torch.float32, device=dev) * scale + shift).to(dtype)


def _d(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.double()


# --- add: x [B,T,D] + y ([B,T,D] residual, or [1,T,D] position embedding) ---------------------
def _add_y_lead(s, o) -> int:
    return 1 if o.get("broadcast", "none") == "pos" else s["B"]


def _add_inputs(s, o, dt, dev):
    return (_r((s["B"], s["T"], s["D"]), dt, dev),
            _r((_add_y_lead(s, o), s["T"], s["D"]), dt, dev))


ADD = OpImpl(
    inputs=_add_inputs,
    reference=lambda s, o, a: a[0].double() + a[1].double(),
    triton=lambda s, o, p, a: K.add(a[0], a[1]),
    torch_fn=lambda s, o: (lambda x, y: x + y),
    cost=lambda s, o, n: add_cost(s["B"] * s["T"] * s["D"], _add_y_lead(s, o) * s["T"] * s["D"], n),
    size=lambda s: s["B"] * s["T"] * s["D"],
)


# --- layernorm over D of x [B,T,D] ------------------------------------------------------------
def _ln_torch(s, o):
    eps, D = float(o.get("eps", 1e-5)), s["D"]
    return lambda x, w, b: F.layer_norm(x, (D,), w, b, eps)


LAYERNORM = OpImpl(
    inputs=lambda s, o, dt, dev: (_r((s["B"], s["T"], s["D"]), dt, dev, 2.0, 0.5),
                                  _r((s["D"],), dt, dev, 0.2, 1.0), _r((s["D"],), dt, dev, 0.2)),
    reference=lambda s, o, a: F.layer_norm(a[0].double(), (s["D"],), a[1].double(), a[2].double(),
                                           float(o.get("eps", 1e-5))),
    triton=lambda s, o, p, a: K.layernorm(a[0], a[1], a[2], float(o.get("eps", 1e-5))),
    torch_fn=_ln_torch,
    cost=lambda s, o, n: layernorm_cost(s["B"] * s["T"], s["D"], n),
    size=lambda s: s["B"] * s["T"] * s["D"],
)


# --- softmax over the last dim of x [B,H,T,N] (attention scores: N = T) -----------------------
def _sm_torch(s, o):
    scale = float(o.get("scale", 1.0))
    if scale == 1.0:
        return lambda x: torch.softmax(x, dim=-1)
    return lambda x: torch.softmax(x * scale, dim=-1)


SOFTMAX = OpImpl(
    inputs=lambda s, o, dt, dev: (_r((s["B"], s["H"], s["T"], s["N"]), dt, dev, 3.0),),
    reference=lambda s, o, a: torch.softmax(a[0].double() * float(o.get("scale", 1.0)), dim=-1),
    triton=lambda s, o, p, a: K.softmax(a[0], scale=float(o.get("scale", 1.0))),
    torch_fn=_sm_torch,
    cost=lambda s, o, n: softmax_cost(s["B"] * s["H"] * s["T"], s["N"], n),
    size=lambda s: s["B"] * s["H"] * s["T"] * s["N"],
)


# --- matmul: epilogue(a @ w^T + bias [+ residual]); a [M,K] or [B,T,K], w [N,K] ----------------
# Option tf32_operands: a and w drawn as TF32 values (rounded once, before any provider runs), as
# the model feeds its TF32 GEMMs; triton then passes tf32_exact=True (the TMA kernel may run them).
def _mm_rows(s) -> tuple[int, ...]:
    return (s["M"],) if "M" in s else (s["B"], s["T"])


def _mm_inputs(s, o, dt, dev):
    lead, N, Kd = _mm_rows(s), s["N"], s["K"]
    a = _r((*lead, Kd), dt, dev)
    w = _r((N, Kd), dt, dev, 1.0 / math.sqrt(Kd))
    bias = _r((N,), dt, dev, 0.1) if o.get("bias", True) else None
    res = _r((*lead, N), dt, dev) if "residual" in o.get("epilogue", "none") else None
    if o.get("tf32_operands"):  # TF32 values, as the model's TF32 GEMMs get them (no-op for 16-bit)
        round_tf32_(a), round_tf32_(w)
    return a, w, bias, res


def _epilogue(y, epi: str, res):
    if epi.startswith("gelu"):
        y = F.gelu(y, approximate="tanh" if epi == "gelu_tanh" else "none")
    return y + res if "residual" in epi else y


def _mm_torch(s, o):
    epi = o.get("epilogue", "none")
    return lambda a, w, bias, res: _epilogue(F.linear(a, w, bias), epi, res)


MATMUL = OpImpl(
    inputs=_mm_inputs,
    reference=lambda s, o, a: _epilogue(F.linear(_d(a[0]), _d(a[1]), _d(a[2])),
                                        o.get("epilogue", "none"), _d(a[3])),
    triton=lambda s, o, p, a: K.matmul(a[0], a[1], a[2], epilogue=o.get("epilogue", "none"),
                                       residual=a[3], precision=p,
                                       tf32_exact=bool(o.get("tf32_operands"))),
    torch_fn=_mm_torch,
    cost=lambda s, o, n: matmul_cost(math.prod(_mm_rows(s)), s["N"], s["K"], n,
                                     has_bias=o.get("bias", True),
                                     has_residual="residual" in o.get("epilogue", "none")),
    size=lambda s: math.prod(_mm_rows(s)),
)


# --- bmm: scale * a @ b (or a @ b^T); a [B,(H),M,K] ------------------------------------------
def _bmm_lead(s) -> tuple[int, ...]:
    return (s["B"], s["H"]) if s.get("H", 1) > 1 else (s["B"],)


def _bmm_inputs(s, o, dt, dev):
    lead = _bmm_lead(s)
    b_shape = (*lead, s["N"], s["K"]) if o.get("transpose_b") else (*lead, s["K"], s["N"])
    return _r((*lead, s["M"], s["K"]), dt, dev), _r(b_shape, dt, dev)


def _bmm_math(a, b, tb: bool, scale: float):
    y = torch.matmul(a, b.transpose(-2, -1) if tb else b)
    return y * scale if scale != 1.0 else y


def _bmm_torch(s, o):
    tb, scale = bool(o.get("transpose_b", False)), float(o.get("scale", 1.0))
    return lambda a, b: _bmm_math(a, b, tb, scale)


BMM = OpImpl(
    inputs=_bmm_inputs,
    reference=lambda s, o, a: _bmm_math(a[0].double(), a[1].double(),
                                        bool(o.get("transpose_b")), float(o.get("scale", 1.0))),
    triton=lambda s, o, p, a: K.bmm(a[0], a[1], scale=float(o.get("scale", 1.0)),
                                    transpose_b=bool(o.get("transpose_b", False)), precision=p),
    torch_fn=_bmm_torch,
    cost=lambda s, o, n: bmm_cost(math.prod(_bmm_lead(s)), s["M"], s["N"], s["K"], n),
    size=lambda s: math.prod(_bmm_lead(s)) * s["M"],
)


# --- patch_embed: Conv2d(kernel = stride = P) + flatten + transpose: [B,C,S,S] -> [B,NP,D] ------
def _pe_inputs(s, o, dt, dev):
    C, P = s["C"], s["P"]
    return (_r((s["B"], C, s["S"], s["S"]), dt, dev), _r((s["D"], C, P, P), dt, dev,
            1.0 / math.sqrt(C * P * P)), _r((s["D"],), dt, dev, 0.1))


def _pe_torch(s, o):
    P = s["P"]
    return lambda px, w, b: F.conv2d(px, w, b, stride=P).flatten(2).transpose(1, 2)


PATCH_EMBED = OpImpl(
    inputs=_pe_inputs,
    reference=lambda s, o, a: _pe_torch(s, o)(a[0].double(), a[1].double(), a[2].double()),
    triton=lambda s, o, p, a: K.patch_embed(a[0], a[1], a[2], precision=p),
    torch_fn=_pe_torch,
    cost=lambda s, o, n: patch_embed_cost(s["B"], s["C"], s["S"], s["S"], s["D"], s["P"], n),
    size=lambda s: s["B"] * (s["S"] // s["P"]) ** 2 * s["D"],
)


# --- attention: softmax(scale * q k^T) v, q, k, v [B,H,T,d] ------------------------------------
def _att_scale(s, o) -> float:
    return float(o.get("scale", 1.0 / math.sqrt(s["d"])))


def _att_ref(s, o, a):
    scale, outs = _att_scale(s, o), []
    for q, k, v in zip(*(t.double() for t in a)):  # one image at a time: bounded memory
        outs.append(torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1) @ v)
    return torch.stack(outs)


def _att_torch(s, o):
    scale = _att_scale(s, o)
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=scale)


ATTENTION = OpImpl(
    inputs=lambda s, o, dt, dev: tuple(_r((s["B"], s["H"], s["T"], s["d"]), dt, dev)
                                       for _ in range(3)),
    reference=_att_ref,
    triton=lambda s, o, p, a: K.attention(a[0], a[1], a[2], scale=_att_scale(s, o), precision=p),
    torch_fn=_att_torch,
    cost=lambda s, o, n: attention_cost(s["B"], s["H"], s["T"], s["d"], n),
    size=lambda s: s["B"] * s["H"] * s["T"],
)

IMPLS: dict[str, OpImpl] = {
    "add": ADD, "layernorm": LAYERNORM, "softmax": SOFTMAX, "matmul": MATMUL, "bmm": BMM,
    "patch_embed": PATCH_EMBED, "attention": ATTENTION,
}
