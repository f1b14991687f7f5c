"""The Triton ViT: named configs, HF weight loading, the kernel-built forward, CUDA graphs, optimize().

  configs.py      name -> ViTConfig table; `spec_from_hf_config` validates any HF ViTConfig
  weights.py      explicit HF -> local weight-name map (classic and transformers-5 layouts)
  checkpoints.py  weight sources: live HF model, save_pretrained directory, hub id, seeded random
  modules.py      TritonViT: the forward made of vitbench.kernels
  graphs.py       GraphRunner: one CUDA graph per batch size
  optimize.py     vitbench.optimize(hf_model): drop-in nn.Module for HF code and pipelines
"""

from vitbench.model.configs import NAMED, ViTSpec, hf_config, spec_from_hf_config
from vitbench.model.modules import TritonViT
from vitbench.model.optimize import OptimizedViT, optimize

__all__ = ["NAMED", "OptimizedViT", "TritonViT", "ViTSpec", "hf_config", "optimize", "spec_from_hf_config"]
