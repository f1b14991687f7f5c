"""What each kernel op of the sweep takes: its shape parameters, options and shape rules.

Kept free of torch/triton imports so config validation can use it cheaply.

  op           parameters (=default)  tensors                        options
  add          B=1, T, D              x [B,T,D] + y                  broadcast: none | pos
  layernorm    B=1, T, D              x [B,T,D]; w, b [D]            eps
  softmax      B=1, H=1, T, N         x [B,H,T,N], rows of N         scale
  matmul       M or (B, T); N, K      a [M,K] or [B,T,K]; w [N,K]    epilogue, bias, tf32_operands
  bmm          B, H=1, M, N, K        a [B,(H),M,K] @ b              transpose_b, scale
  patch_embed  B, C=3, S, P, D        pixels [B,C,S,S]; w [D,C,P,P]
  attention    B, H, T, d             q, k, v [B,H,T,d]              scale (default 1/sqrt(d))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

EPILOGUES = ("none", "gelu", "gelu_tanh", "residual", "gelu_residual")


def _check_matmul(s: dict[str, int]) -> str | None:
    if "M" in s and ("B" in s or "T" in s):
        return "give M (a [M, K] input) or B and T (a [B, T, K] input), not both"
    if "M" not in s and not ("B" in s and "T" in s):
        return "give M (a [M, K] input) or both B and T (a [B, T, K] input)"
    return None


def _check_patch(s: dict[str, int]) -> str | None:
    if s["S"] % s["P"]:
        return f"image size S={s['S']} is not a multiple of the patch size P={s['P']}"
    return None


def _check_attention(s: dict[str, int]) -> str | None:
    return f"head dim d={s['d']} exceeds 256" if s["d"] > 256 else None


def _check_options(allowed: dict[str, Callable[[Any], bool]]) -> Callable[[dict], str | None]:
    def check(opts: dict[str, Any]) -> str | None:
        for k, v in opts.items():
            if k not in allowed:
                return f"unknown option {k!r}; allowed: {', '.join(allowed) or 'none'}"
            if not allowed[k](v):
                return f"option {k}={v!r} is not valid"
        return None
    return check


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


@dataclass(frozen=True)
class OpSpec:
    order: tuple[str, ...]  # every shape parameter, in the order of the CSV's shape string
    defaults: dict[str, int] = field(default_factory=dict)  # filled in when not given
    optional: tuple[str, ...] = ()  # may be absent (no default)
    check_shape: Callable[[dict[str, int]], str | None] = lambda s: None
    check_options: Callable[[dict[str, Any]], str | None] = _check_options({})
    dots: bool = False  # has matrix products: fp32 rows come per precision (ieee, tf32, bf16x6, ...)

    @property
    def params(self) -> tuple[str, ...]:
        return self.order

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(k for k in self.order if k not in self.defaults and k not in self.optional)


OP_SPECS: dict[str, OpSpec] = {
    "add": OpSpec(("B", "T", "D"), {"B": 1},
                  check_options=_check_options({"broadcast": lambda v: v in ("none", "pos")})),
    "layernorm": OpSpec(("B", "T", "D"), {"B": 1}, check_options=_check_options({"eps": _num})),
    "softmax": OpSpec(("B", "H", "T", "N"), {"B": 1, "H": 1},
                      check_options=_check_options({"scale": _num})),
    "matmul": OpSpec(("M", "B", "T", "N", "K"), optional=("M", "B", "T"),
                     check_shape=_check_matmul, dots=True,
                     check_options=_check_options({"epilogue": lambda v: v in EPILOGUES,
                                                   "bias": lambda v: isinstance(v, bool),
                                                   "tf32_operands": lambda v: isinstance(v, bool)})),
    "bmm": OpSpec(("B", "H", "M", "N", "K"), {"H": 1}, dots=True,
                  check_options=_check_options({"transpose_b": lambda v: isinstance(v, bool),
                                                "scale": _num})),
    "patch_embed": OpSpec(("B", "C", "S", "P", "D"), {"C": 3}, check_shape=_check_patch, dots=True),
    "attention": OpSpec(("B", "H", "T", "d"), check_shape=_check_attention, dots=True,
                        check_options=_check_options({"scale": _num})),
}

OPS: tuple[str, ...] = tuple(OP_SPECS)


def complete_shape(op: str, shape: dict[str, int]) -> dict[str, int]:
    """The shape with defaults filled in, in the op's canonical parameter order."""
    spec = OP_SPECS[op]
    full = {**spec.defaults, **shape}
    return {k: full[k] for k in spec.order if k in full}
