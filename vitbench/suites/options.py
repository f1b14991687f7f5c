"""Command-line option values shared by the suites: comma lists and single choices.

Every mistake -> one-line VitbenchError naming the option and the bad value:
  parse_choices("fp32,fp8", "dtype", DTYPES)  -> "--dtype: unknown value 'fp8'; choose from ..."
  parse_positive_ints("1,,x", "batch")        -> "--batch '1,,x': empty item; ..."
"""

from __future__ import annotations

from typing import Iterable

from vitbench.errors import VitbenchError


def _items(text: str, option: str, hint: str) -> list[str]:
    """'a, b' -> ['a', 'b']; an empty item (',,' or a trailing comma) is a mistake."""
    items = [v.strip() for v in text.split(",")]
    if not all(items):
        raise VitbenchError(f"--{option} {text!r}: empty item; {hint}")
    return items


def parse_choices(text: str, option: str, allowed: Iterable[str]) -> list[str]:
    """'a,b' -> ['a', 'b'] (duplicates dropped, order kept), each one of `allowed`."""
    allowed = tuple(allowed)
    hint = f"choose from {', '.join(allowed)}"
    items = _items(text, option, hint)
    for v in items:
        check_choice(v, option, allowed)
    return list(dict.fromkeys(items))


def check_choice(value: str, option: str, allowed: Iterable[str], what: str = "value") -> str:
    """`value` itself when it is one of `allowed`, else a VitbenchError naming --option."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise VitbenchError(f"--{option}: unknown {what} {value!r}; choose from "
                            f"{', '.join(allowed)}")
    return value


def parse_positive_ints(text: str, option: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32] (duplicates dropped); non-integers and values < 1 are mistakes."""
    out = []
    for item in _items(text, option, "give positive integers like 1,8,32"):
        try:
            n = int(item)
        except ValueError:
            raise VitbenchError(f"--{option} {text!r}: {item!r} is not an integer") from None
        if n <= 0:
            raise VitbenchError(f"--{option} {text!r}: {n} must be at least 1")
        out.append(n)
    return list(dict.fromkeys(out))
