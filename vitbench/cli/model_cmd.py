"""`vitbench model` (being written)."""

from vitbench.errors import VitbenchError


def model() -> None:
    """Not built yet."""
    raise VitbenchError("`vitbench model` is not built yet")
