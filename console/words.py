"""Words the console and the commands show: counts with the right plural ("1 row", "2 rows"), a
model with its preset, a duration, a cell text cut to its width.

One helper each, so that no screen or command prints "1 rows" again and every table names a model
and its preset the same way.
"""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """`plural(1, "row")` → "1 row"; `plural(3, "row")` → "3 rows"; `many` for irregular plurals."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def model_label(model: str, preset: str | None) -> str:
    """`toto` for the tiny preset (the default every table assumes), `toto·base` for any other."""
    return model if preset in (None, "tiny") else f"{model}·{preset}"


def clock_text(seconds: float) -> str:
    """`0m06s`, `12m30s`, `1h04m`: five characters up to 9h59m (ETAs and durations in tables)."""
    m, s = divmod(int(max(0.0, float(seconds))), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def clipped(text: str, width: int) -> str:
    """`text` cut to `width` characters with "…" when longer (the full text is shown elsewhere)."""
    return text if len(text) <= width else text[: width - 1] + "…"
