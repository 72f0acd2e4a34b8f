"""Words the console and the commands show: counts with the right plural ("1 row", "2 rows").

One helper so that no screen or command prints "1 rows" again.
"""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """`plural(1, "row")` → "1 row"; `plural(3, "row")` → "3 rows"; `many` for irregular plurals."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
