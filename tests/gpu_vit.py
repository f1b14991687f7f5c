"""A ViT-B/16 in fp32 for the GPU tests of the exact-fp32 kernels: HF's logits in float64 as the
reference, and the Triton model's logits-only forward (the last layer's CLS rows) to replay."""

from __future__ import annotations

from typing import Callable

import torch


def vit_b16_fp32(batch: int, precision: str = "ieee") -> tuple[Callable[[torch.Tensor], tuple], torch.Tensor,
                                                                torch.Tensor]:
    """(forward, pixels, want): forward(pixels) runs the Triton ViT (in `precision`) under inference mode and
    returns its (None, None, logits); want is HF eager's logits in float64 for the same random
    weights and pixels ([batch, 3, 224, 224] in [-1, 1), on the GPU)."""
    from vitbench.model import checkpoints
    from vitbench.model.configs import hf_config
    from vitbench.model.modules import TritonViT

    ckpt = checkpoints.random_weights(hf_config("vit-base-patch16-224"))
    hf = checkpoints.hf_model(ckpt, device="cuda", dtype=torch.float64, attn_implementation="eager")
    x = torch.rand(batch, 3, 224, 224, device="cuda") * 2 - 1
    with torch.inference_mode():
        want = hf(pixel_values=x.double()).logits
    del hf
    tri = TritonViT(ckpt.spec, ckpt.local, precision=precision).to(device="cuda")

    def forward(px: torch.Tensor) -> tuple:
        with torch.inference_mode():
            return tri(px, logits_only=True)

    return forward, x, want
