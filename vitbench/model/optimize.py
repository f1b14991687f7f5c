"""`vitbench.optimize(hf_model)`: a drop-in module that runs an HF ViT on vitbench's kernels.

    model = vitbench.optimize(ViTForImageClassification.from_pretrained(...))
    model(pixel_values).logits                # same fields as HF: logits / last_hidden_state
    pipeline("image-classification", model=model, image_processor=processor)

The returned module copies the HF model's weights (q/k/v fused) onto vitbench's device (CUDA,
or CPU under the Triton interpreter) in the HF model's dtype; on a GPU it replays one CUDA graph
per batch size (`graphs=False` turns that off). It keeps the HF `.config`, so HF pipelines,
label maps and processors keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from vitbench._backend import DEVICE
from vitbench.errors import VitbenchError
from vitbench.kernels._common import PRECISIONS
from vitbench.model.checkpoints import from_hf_model
from vitbench.model.graphs import GRAPHS_AVAILABLE, GraphRunner
from vitbench.model.modules import TritonViT


@dataclass
class ViTModelOutput(ModelOutput):
    """Like HF's BaseModelOutputWithPooling: out[0] is last_hidden_state."""

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None


@dataclass
class ViTClassifierOutput(ModelOutput):
    """Like HF's ImageClassifierOutput (out[0] is logits), plus the encoder's outputs."""

    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None


class OptimizedViT(nn.Module):
    """An HF ViT model's forward on vitbench's Triton kernels (see the module docstring)."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _is_vitbench = True

    def __init__(self, hf_model, *, dtype: torch.dtype | None = None, precision: str = "ieee",
                 graphs: bool | None = None):
        super().__init__()
        ckpt = from_hf_model(hf_model)
        self.config = hf_model.config
        self.spec = ckpt.spec
        dtype = dtype or next(iter(ckpt.local.values())).dtype
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise VitbenchError(f"dtype {dtype} is not supported; use float32, float16 or bfloat16")
        if precision not in PRECISIONS:
            raise VitbenchError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.vit = TritonViT(ckpt.spec, ckpt.local, precision=precision).to(device=DEVICE, dtype=dtype)
        if graphs and not GRAPHS_AVAILABLE:
            raise VitbenchError("graphs=True needs a CUDA GPU (here Triton runs in the interpreter)")
        # ViTForImageClassification with num_labels=0 has an Identity head: logits = CLS state.
        self._identity_head = isinstance(getattr(hf_model, "classifier", None), nn.Identity)
        self.use_graphs = GRAPHS_AVAILABLE if graphs is None else bool(graphs)
        self._graphs = GraphRunner(self._forward) if self.use_graphs else None

    # --- what HF pipelines and user code read from a model -----------------------------------
    @property
    def device(self) -> torch.device:
        return self.vit.norm_w.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vit.norm_w.dtype

    @property
    def num_labels(self) -> int:
        return self.spec.num_labels

    def can_generate(self) -> bool:
        return False

    def _apply(self, fn, *args, **kwargs):
        # .to()/.half()/.cuda(): moving weights invalidates captured graphs; the Triton kernels
        # only run on vitbench's device, which forward() checks.
        out = super()._apply(fn, *args, **kwargs)
        if getattr(self, "_graphs", None) is not None:
            self._graphs.reset()
        return out

    # --- forward ------------------------------------------------------------------------------
    def _forward(self, pixels: torch.Tensor):
        # no_grad, not inference_mode: outputs must be ordinary tensors a caller may modify.
        with torch.no_grad():
            return self.vit(pixels)

    def forward(self, pixel_values: torch.Tensor | None = None, *, return_dict: bool | None = None,
                interpolate_pos_encoding: bool | None = None, labels=None,
                output_attentions: bool | None = None, output_hidden_states: bool | None = None,
                **kwargs):
        if pixel_values is None:
            raise VitbenchError("pixel_values is required")
        if interpolate_pos_encoding or labels is not None or output_attentions or output_hidden_states:
            raise VitbenchError("the vitbench ViT supports neither interpolate_pos_encoding, labels, "
                                "output_attentions nor output_hidden_states")
        extra = {k: v for k, v in kwargs.items() if v is not None}
        if extra:
            raise VitbenchError(f"unsupported forward arguments: {', '.join(sorted(extra))}")
        s = self.spec
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (s.channels, s.image_h, s.image_w):
            raise VitbenchError(f"pixel_values has shape {tuple(pixel_values.shape)}; expected "
                                f"[batch, {s.channels}, {s.image_h}, {s.image_w}]")
        x = pixel_values.to(device=self.device, dtype=self.dtype)
        if self._graphs is not None:
            hidden, pooled, logits = (None if t is None else t.clone() for t in self._graphs(x))
        else:
            hidden, pooled, logits = self._forward(x.contiguous())
        if self._identity_head:
            logits = hidden[:, 0]
        if logits is not None:
            out = ViTClassifierOutput(logits=logits, last_hidden_state=hidden, pooler_output=pooled)
        else:
            out = ViTModelOutput(last_hidden_state=hidden, pooler_output=pooled)
        return out if return_dict is not False else out.to_tuple()


def _dropin_class(hf_cls: type) -> type:
    """An OptimizedViT subclass carrying the HF class's __name__: HF pipelines check the model
    class by name (and log a misleading "not supported" error otherwise). repr() says both."""
    name = hf_cls.__name__
    if name not in _DROPIN:
        _DROPIN[name] = type(name, (OptimizedViT,), {
            "__doc__": f"vitbench drop-in for {name} (an OptimizedViT).",
            "__qualname__": f"OptimizedViT[{name}]",
            "_get_name": lambda self: f"OptimizedViT[{name}]",
        })
    return _DROPIN[name]


_DROPIN: dict[str, type] = {}


def optimize(hf_model, *, dtype: torch.dtype | None = None, precision: str = "ieee",
             graphs: bool | None = None) -> OptimizedViT:
    """A drop-in, Triton-backed copy of an HF `ViTModel` / `ViTForImageClassification`.

    dtype: defaults to the HF model's; precision: "ieee" (exact fp32 dots), "tf32", or a
    tensor-core split mode ("bf16x6", "tf32x3", "bf16x3"; vitbench.kernels._common.PRECISIONS);
    graphs: CUDA graphs per batch size (default: on when a GPU is present). The result is an
    `OptimizedViT` (isinstance holds) whose class name is the HF model's, for HF pipelines.
    """
    cls = _dropin_class(type(hf_model)) if isinstance(hf_model, nn.Module) else OptimizedViT
    return cls(hf_model, dtype=dtype, precision=precision, graphs=graphs)
