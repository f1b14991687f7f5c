"""Named ViT configurations, and the validated spec the Triton forward runs.

`NAMED` is a small name -> HF `ViTConfig` keyword table (gpt-fast style). `spec_from_hf_config`
turns ANY HF ViTConfig into a `ViTSpec`, refusing what the Triton path cannot compute exactly
(another activation, another model type, ...) with a `VitbenchError` instead of wrong numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitbench.errors import VitbenchError

# Shared by every named config: HF ViT defaults (exact GELU, eps 1e-12, q/k/v biases), 3 channels.
_COMMON = dict(hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True, num_channels=3,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _cfg(D: int, L: int, H: int, M: int, image: int, patch: int, labels: int = 1000) -> dict:
    return dict(_COMMON, hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                intermediate_size=M, image_size=image, patch_size=patch, num_labels=labels)


# name -> ViTConfig keywords. Shapes of the public checkpoints of the same names (google/...,
# facebook/deit-*: the non-distilled DeiT checkpoints use the ViT layout), 1000-class heads.
NAMED: dict[str, dict] = {
    "vit-base-patch16-224": _cfg(768, 12, 12, 3072, 224, 16),
    "vit-base-patch32-224": _cfg(768, 12, 12, 3072, 224, 32),
    "vit-large-patch16-224": _cfg(1024, 24, 16, 4096, 224, 16),
    "vit-huge-patch14-224": _cfg(1280, 32, 16, 5120, 224, 14),
    "deit-tiny-patch16-224": _cfg(192, 12, 3, 768, 224, 16),
    "deit-small-patch16-224": _cfg(384, 12, 6, 1536, 224, 16),
    "deit-base-patch16-224": _cfg(768, 12, 12, 3072, 224, 16),
    # Small enough for the Triton interpreter on CPU: 16 patches + CLS = 17 tokens.
    "vit-tiny-test": _cfg(64, 2, 4, 128, 32, 8, labels=10),
}

DEFAULT_GPU_MODEL = "vit-base-patch16-224"
DEFAULT_CPU_MODEL = "vit-tiny-test"

# HF activation name -> matmul epilogue. gelu_new / gelu_pytorch_tanh / gelu_fast are all the
# tanh approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))); gelu / gelu_python are exact erf.
_ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}


def hf_config(name: str):
    """The HF `ViTConfig` of a named config; unknown names -> VitbenchError listing the known."""
    from transformers import ViTConfig

    if name not in NAMED:
        raise VitbenchError(f"unknown model {name!r}; choose from {', '.join(NAMED)}")
    return ViTConfig(**NAMED[name])


@dataclass(frozen=True)
class ViTSpec:
    """Everything the Triton forward needs to know about the architecture."""

    image_h: int
    image_w: int
    patch: int  # square patches, stride = patch
    channels: int
    dim: int  # D, hidden size
    layers: int
    heads: int  # H
    head_dim: int  # d; H * d is the attention width (= D for every standard ViT)
    mlp: int  # MLP hidden size
    eps: float  # layernorm eps
    act: str  # FC1 epilogue: "gelu" (erf) or "gelu_tanh"
    qkv_bias: bool
    pooler: bool  # ViTModel's pooler: tanh(dense(last_hidden_state[:, 0]))
    pooler_dim: int
    num_labels: int  # classifier head on the CLS token; 0 = no head

    @property
    def num_patches(self) -> int:
        return (self.image_h // self.patch) * (self.image_w // self.patch)

    @property
    def tokens(self) -> int:  # T = patches + CLS
        return self.num_patches + 1

    @property
    def inner(self) -> int:  # attention width H * d
        return self.heads * self.head_dim

    def flops(self, batch: int) -> int:
        """FLOPs of one forward (2 per multiply-add; layernorm, softmax, adds not counted)."""
        T, D, A, M = self.tokens, self.dim, self.inner, self.mlp
        patch = 2 * self.num_patches * self.channels * self.patch**2 * D
        layer = (2 * T * D * 3 * A  # fused QKV [T, D] x [D, 3A]
                 + 4 * T * T * A  # q k^T and p v over H heads of d
                 + 2 * T * A * D  # out-projection
                 + 4 * T * D * M)  # FC1 + FC2
        heads = 2 * D * self.pooler_dim * self.pooler + 2 * D * self.num_labels
        return batch * (patch + self.layers * layer + heads)

    def num_params(self) -> int:
        D, A, M, L = self.dim, self.inner, self.mlp, self.layers
        per_layer = 3 * A * D + 3 * A * self.qkv_bias + A * D + D + 4 * D + 2 * D * M + M + D
        embed = D * self.channels * self.patch**2 + D + D + self.tokens * D
        heads = (D * self.pooler_dim + self.pooler_dim) * self.pooler + (D + 1) * self.num_labels
        return embed + L * per_layer + 2 * D + heads


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    try:
        a, b = value
        return int(a), int(b)
    except (TypeError, ValueError):
        raise VitbenchError(f"config {what} must be an int or a pair of ints, got {value!r}") from None


def spec_from_hf_config(config, *, pooler: bool = False, head: bool = False) -> ViTSpec:
    """Validate an HF ViTConfig for the Triton path; `pooler`/`head`: which optional parts exist."""
    model_type = getattr(config, "model_type", None)
    if model_type != "vit":
        raise VitbenchError(f"config model_type is {model_type!r}; only 'vit' (ViTConfig) is supported")
    act = getattr(config, "hidden_act", None)
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise VitbenchError(
            f"config hidden_act {act!r} is not supported by the Triton ViT; "
            f"supported: {', '.join(_ACTIVATIONS)}")
    if pooler and getattr(config, "pooler_act", "tanh") != "tanh":
        raise VitbenchError(f"config pooler_act {config.pooler_act!r} is not supported; only 'tanh'")
    image_h, image_w = _pair(config.image_size, "image_size")
    ph, pw = _pair(config.patch_size, "patch_size")
    if ph != pw:
        raise VitbenchError(f"config patch_size {config.patch_size!r}: only square patches are supported")
    if image_h % ph or image_w % ph:
        raise VitbenchError(
            f"config image_size {config.image_size!r} is not a multiple of patch_size {ph}")
    D, H = int(config.hidden_size), int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or (D // H if H and D % H == 0 else None)
    if not head_dim:
        raise VitbenchError(f"config hidden_size {D} is not divisible by num_attention_heads {H}")
    if int(head_dim) > 256:
        raise VitbenchError(f"config head dim {head_dim} > 256 is not supported by the attention kernel")
    num_labels = int(config.num_labels) if head else 0
    return ViTSpec(
        image_h=image_h, image_w=image_w, patch=ph, channels=int(config.num_channels),
        dim=D, layers=int(config.num_hidden_layers), heads=H, head_dim=int(head_dim),
        mlp=int(config.intermediate_size), eps=float(config.layer_norm_eps),
        act=_ACTIVATIONS[act], qkv_bias=bool(getattr(config, "qkv_bias", True)),
        pooler=pooler, pooler_dim=int(getattr(config, "pooler_output_size", None) or D),
        num_labels=num_labels,
    )
