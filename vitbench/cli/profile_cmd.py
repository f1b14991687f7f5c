"""`vitbench profile` (being written)."""

from vitbench.errors import VitbenchError


def profile() -> None:
    """Not built yet."""
    raise VitbenchError("`vitbench profile` is not built yet")
