"""The console's first frame does not wait for modules only a later view needs.

Why: the first frame (issue 16: ≤ 1 s, bench/bench_console.py) includes importing the app; numpy
(~0.2–0.4 s here) is only needed once the Forecast view opens, pandas and torch never.
"""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_console_app_imports_no_numpy_pandas_or_torch() -> None:
    code = ("import sys, console.app; "
            "print(sorted(m for m in ('numpy', 'pandas', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
