"""docs/ARCHITECTURE.md's module table is the map: every module of console/, engine/ and store/ has its
row, and the row says what the module's docstring says (its first paragraph), so a split or a rewritten
docstring cannot leave the map behind.

`python -m tests.test_architecture_doc --write` rewrites the table from the docstrings (after a split,
a new module or a rewritten docstring); without `--write` it prints the table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGES = ("console", "engine", "store")
ROW = re.compile(r"^\| `([^`]+\.py)` \| (.*) \|$", re.MULTILINE)


def summaries() -> dict[str, str]:
    """Module path → the first paragraph of its docstring, on one line (empty package markers left out)."""
    out: dict[str, str] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not doc and path.name == "__init__.py" and not text.strip():
                continue
            out[path.relative_to(ROOT).as_posix()] = " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")
    return out


def table() -> str:
    rows = [f"| `{mod}` | {line} |" for mod, line in summaries().items()]
    return "\n".join(["| Module | What it holds |", "|---|---|", *rows])


def write_table() -> None:
    """Replace the doc's module table (its header row up to the first line that is not a row)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("| Module | What it holds |")
    end = start
    for line in text[start:].splitlines(keepends=True):
        if not line.startswith("|"):
            break
        end += len(line)
    DOC.write_text(text[:start] + table() + "\n" + text[end:], encoding="utf-8")


def test_every_module_has_its_docstring_line_in_the_architecture_map() -> None:
    rows = dict(ROW.findall(DOC.read_text(encoding="utf-8")))
    code = summaries()
    assert all(code.values()), [m for m, line in code.items() if not line]  # every module says what it holds
    missing = sorted(set(code) - set(rows))
    gone = sorted(set(rows) - set(code))
    stale = sorted(m for m in set(code) & set(rows) if " ".join(rows[m].split()) != code[m])
    hint = "regenerate the table with `python -m tests.test_architecture_doc --write`"
    assert not missing, f"modules without a row in docs/ARCHITECTURE.md: {missing}; {hint}"
    assert not gone, f"rows for modules that do not exist: {gone}; {hint}"
    assert not stale, f"rows that no longer say what the docstring says: {stale}; {hint}"


if __name__ == "__main__":
    import sys

    write_table() if "--write" in sys.argv[1:] else print(table())
