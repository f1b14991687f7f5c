"""vitbench: run, check and measure Vision Transformer inference written in Triton."""

from vitbench import _backend  # noqa: F401  (must run before any Triton kernel is defined)
from vitbench._backend import BACKEND, DEVICE, INTERPRETER
from vitbench.errors import VitbenchError

__version__ = "0.1.0"

__all__ = ["BACKEND", "DEVICE", "INTERPRETER", "VitbenchError", "__version__", "optimize"]


def optimize(hf_model, **kwargs):
    """Return a Triton-backed drop-in replacement for an HF ViT model (see vitbench.model)."""
    from vitbench.model.optimize import optimize as _optimize

    return _optimize(hf_model, **kwargs)
