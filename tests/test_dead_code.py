"""No dead code: every function, class and method of the packages is used somewhere (tests and benches count).

vulture finds names nothing refers to. Typer commands, FastAPI routes and handlers are used through their
decorators, and `find_class` is the pickle hook the BRISQUE model loader overrides; they are ignored by rule,
not listed one by one. Unused variables, arguments and attributes are left to ruff and review.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flywheel", "filters", "captioners", "trainer", "pipelines", "dashboards", "corpus", "tests", "bench")


def test_no_unreferenced_functions_classes_or_methods() -> None:
    pytest.importorskip("vulture")
    cmd = [
        sys.executable,
        "-m",
        "vulture",
        *PACKAGES,
        "--min-confidence",
        "60",
        "--ignore-decorators",
        "@*.command,@*.get,@*.post,@*.exception_handler,@*.middleware,@*.callback",
        "--ignore-names",
        "find_class",
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False).stdout
    kinds = ("unused function", "unused class", "unused method", "unused import", "unused property")
    dead = [line for line in out.splitlines() if any(k in line for k in kinds) and not line.startswith("tests/")]
    assert not dead, "dead code (remove it, or use it):\n" + "\n".join(dead)
