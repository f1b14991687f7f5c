"""Pick the Triton backend before any kernel is defined.

Triton reads ``TRITON_INTERPRET`` when a ``@triton.jit`` function is decorated, so this module
must be imported before ``vitbench.kernels``; ``vitbench/__init__.py`` imports it first.
Without a CUDA GPU, kernels run in Triton's interpreter on CPU tensors (correct, not fast).
"""

import os

import torch

HAS_CUDA: bool = torch.cuda.is_available()

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

INTERPRETER: bool = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
BACKEND: str = "interpreter" if INTERPRETER else "cuda"
# Where kernel inputs must live: the interpreter runs on host memory.
DEVICE: torch.device = torch.device("cpu" if INTERPRETER else "cuda")

INTERPRETER_NOTE = "no CUDA GPU: Triton kernels run in the interpreter, timings not representative"
