"""`vitbench report` (being written)."""

from vitbench.errors import VitbenchError


def report() -> None:
    """Not built yet."""
    raise VitbenchError("`vitbench report` is not built yet")


def compare() -> None:
    """Not built yet."""
    raise VitbenchError("`vitbench compare` is not built yet")
