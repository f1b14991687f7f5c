"""`vitbench kernels` (being written)."""

from vitbench.errors import VitbenchError


def kernels() -> None:
    """Not built yet."""
    raise VitbenchError("`vitbench kernels` is not built yet")
