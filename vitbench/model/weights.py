"""HF ViT checkpoints -> local weight names: an explicit map, both key layouts, strict checks.

Local names (what `modules.TritonViT` is built from):
  embed.patch.weight [D, C, p, p]   embed.patch.bias [D]   embed.cls [1, 1, D]   embed.pos [1, T, D]
  blocks.N.{ln1,ln2}.{weight,bias} [D]
  blocks.N.{q,k,v}.weight [A, D]  blocks.N.{q,k,v}.bias [A] (when qkv_bias)   A = heads * head_dim
  blocks.N.o.weight [D, A]  blocks.N.o.bias [D]
  blocks.N.fc1.weight [M, D]  .bias [M]     blocks.N.fc2.weight [D, M]  .bias [D]
  norm.{weight,bias} [D]    pooler.weight [P, D] pooler.bias [P]    head.weight [L, D] head.bias [L]

HF layouts: "v5" (transformers 5: `layers.N.attention.q_proj`, `layers.N.mlp.fc1`, ...) and
"classic" (transformers 4: `encoder.layer.N.attention.attention.query`, `...intermediate.dense`).
Encoder keys carry a `vit.` prefix in task models (ViTForImageClassification), none in ViTModel;
the classifier is always `classifier.*` at the top.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from vitbench.errors import VitbenchError
from vitbench.model.configs import ViTSpec

LAYOUTS = ("v5", "classic")

# local name -> HF name below the encoder prefix, same in both layouts.
EMBED_MAP: dict[str, str] = {
    "embed.patch.weight": "embeddings.patch_embeddings.projection.weight",
    "embed.patch.bias": "embeddings.patch_embeddings.projection.bias",
    "embed.cls": "embeddings.cls_token",
    "embed.pos": "embeddings.position_embeddings",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
    "pooler.weight": "pooler.dense.weight",
    "pooler.bias": "pooler.dense.bias",
}
HEAD_MAP: dict[str, str] = {"head.weight": "classifier.weight", "head.bias": "classifier.bias"}

# Per layer: local module -> (v5 module, classic module), below the layer prefix.
LAYER_PREFIX = {"v5": "layers.{i}.", "classic": "encoder.layer.{i}."}
LAYER_MAP: dict[str, tuple[str, str]] = {
    "ln1": ("layernorm_before", "layernorm_before"),
    "q": ("attention.q_proj", "attention.attention.query"),
    "k": ("attention.k_proj", "attention.attention.key"),
    "v": ("attention.v_proj", "attention.attention.value"),
    "o": ("attention.o_proj", "attention.output.dense"),
    "ln2": ("layernorm_after", "layernorm_after"),
    "fc1": ("mlp.fc1", "intermediate.dense"),
    "fc2": ("mlp.fc2", "output.dense"),
}

_LAYER_KEY = {"v5": re.compile(r"(^|\.)layers\.\d+\."), "classic": re.compile(r"(^|\.)encoder\.layer\.\d+\.")}


def detect_layout(keys) -> tuple[str, str]:
    """(layout, encoder prefix "" or "vit.") of an HF ViT state dict's keys."""
    keys = list(keys)
    found = [name for name, pat in _LAYER_KEY.items() if any(pat.search(k) for k in keys)]
    if len(found) > 1:
        raise VitbenchError("checkpoint mixes the classic (encoder.layer.N) and transformers-5 "
                            "(layers.N) key layouts")
    layout = found[0] if found else "v5"
    prefix = "vit." if any(k.startswith("vit.") for k in keys) else ""
    return layout, prefix


def hf_to_local_names(layout: str, prefix: str, layers: int) -> dict[str, str]:
    """Every HF name this layout/prefix may hold for `layers` layers -> its local name."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    col = LAYOUTS.index(layout)
    names = {prefix + hf: local for local, hf in EMBED_MAP.items()}
    names.update({hf: local for local, hf in HEAD_MAP.items()})
    for i in range(layers):
        lp = prefix + LAYER_PREFIX[layout].format(i=i)
        for local, hf in LAYER_MAP.items():
            for leaf in ("weight", "bias"):
                names[f"{lp}{hf[col]}.{leaf}"] = f"blocks.{i}.{local}.{leaf}"
    return names


def expected_shapes(spec: ViTSpec) -> dict[str, tuple[int, ...]]:
    """Local name -> shape, for exactly the tensors this spec needs."""
    D, A, M, C, p = spec.dim, spec.inner, spec.mlp, spec.channels, spec.patch
    shapes: dict[str, tuple[int, ...]] = {
        "embed.patch.weight": (D, C, p, p), "embed.patch.bias": (D,),
        "embed.cls": (1, 1, D), "embed.pos": (1, spec.tokens, D),
        "norm.weight": (D,), "norm.bias": (D,),
    }
    for i in range(spec.layers):
        b = f"blocks.{i}."
        for ln in ("ln1", "ln2"):
            shapes[b + ln + ".weight"] = shapes[b + ln + ".bias"] = (D,)
        for x in "qkv":
            shapes[f"{b}{x}.weight"] = (A, D)
            if spec.qkv_bias:
                shapes[f"{b}{x}.bias"] = (A,)
        shapes[b + "o.weight"], shapes[b + "o.bias"] = (D, A), (D,)
        shapes[b + "fc1.weight"], shapes[b + "fc1.bias"] = (M, D), (M,)
        shapes[b + "fc2.weight"], shapes[b + "fc2.bias"] = (D, M), (D,)
    if spec.pooler:
        shapes["pooler.weight"], shapes["pooler.bias"] = (spec.pooler_dim, D), (spec.pooler_dim,)
    if spec.num_labels:
        shapes["head.weight"], shapes["head.bias"] = (spec.num_labels, D), (spec.num_labels,)
    return shapes


def _listing(names, limit: int = 6) -> str:
    names = sorted(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def to_local(state_dict: Mapping[str, torch.Tensor], config) -> tuple[dict[str, torch.Tensor], ViTSpec]:
    """Rename an HF ViT state dict (either layout, with/without `vit.`) to local names; strict.

    Unexpected, missing and misshaped keys raise VitbenchError naming them. Returns the local
    tensors (as stored, not copied) and the spec (pooler / head present as the checkpoint says).
    """
    from vitbench.model.configs import spec_from_hf_config

    layout, prefix = detect_layout(state_dict.keys())
    names = hf_to_local_names(layout, prefix, int(config.num_hidden_layers))
    unexpected = [k for k in state_dict if k not in names]
    if unexpected:
        raise VitbenchError(f"unexpected keys in checkpoint ({layout} layout): {_listing(unexpected)}")
    local = {names[k]: v for k, v in state_dict.items()}
    if any(k.startswith("head.") for k in local):
        # HF's ViTForImageClassification has no pooler and ignores pooler weights in a
        # checkpoint that also holds a classifier: do the same.
        local = {k: v for k, v in local.items() if not k.startswith("pooler.")}
    spec = spec_from_hf_config(config, pooler=any(k.startswith("pooler.") for k in local),
                               head=any(k.startswith("head.") for k in local))
    shapes = expected_shapes(spec)
    back = {v: k for k, v in names.items()}
    missing = [back[k] for k in shapes if k not in local]
    if missing:
        raise VitbenchError(f"missing keys in checkpoint ({layout} layout): {_listing(missing)}")
    extra = [back[k] for k in local if k not in shapes]  # e.g. q bias with qkv_bias=False
    if extra:
        raise VitbenchError(f"unexpected keys in checkpoint ({layout} layout): {_listing(extra)}")
    bad = [f"{back[k]} {tuple(t.shape)} (expected {shapes[k]})"
           for k, t in local.items() if tuple(t.shape) != shapes[k]]
    if bad:
        raise VitbenchError(f"misshaped keys in checkpoint: {_listing(bad, 4)}")
    notfloat = [back[k] for k, t in local.items() if not t.is_floating_point()]
    if notfloat:
        raise VitbenchError(f"non-floating-point tensors in checkpoint: {_listing(notfloat)}")
    return local, spec


def from_local(local: Mapping[str, torch.Tensor], layout: str, prefix: str, layers: int) -> dict:
    """Local names -> HF names of the given layout/prefix (to load into any HF ViT model)."""
    names = {v: k for k, v in hf_to_local_names(layout, prefix, layers).items()}
    return {names[k]: v for k, v in local.items()}
