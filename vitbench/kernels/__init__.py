"""Triton kernel library. One op per file: `@triton.jit` kernel(s), then the launcher.

Every launcher validates its tensors (device, dtype in fp32/fp16/bf16, shapes, strides) and raises
`VitbenchError` naming the bad argument.
"""

from vitbench.kernels.add import add
from vitbench.kernels.attention import attention
from vitbench.kernels.bmm import bmm
from vitbench.kernels.layernorm import add_layernorm, layernorm
from vitbench.kernels.matmul import EPILOGUES, matmul
from vitbench.kernels.patch_embed import patch_embed
from vitbench.kernels.softmax import softmax

__all__ = [
    "EPILOGUES", "add", "add_layernorm", "attention", "bmm", "layernorm", "matmul",
    "patch_embed", "softmax",
]
