"""Every exception class of the project hangs off the one root, on the user-error or the run-failed branch."""

import ast
import builtins
from pathlib import Path

from flywheel.errors import FlywheelError, MissingInput, RunFailed, UserError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flywheel", "filters", "captioners", "trainer", "pipelines", "dashboards", "corpus")
# Not errors but signals: a partition deadline must escape per-sample `except Exception` nets.
CONTROL_FLOW = {"_Expired"}
BUILTIN_EXCEPTIONS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}


def _classes() -> dict[str, tuple[str, list[str]]]:
    found: dict[str, tuple[str, list[str]]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                    found[node.name] = (str(path.relative_to(ROOT)), bases)
    return found


def test_branches_keep_the_standard_meaning():
    assert issubclass(UserError, ValueError) and issubclass(MissingInput, FileNotFoundError)
    assert issubclass(RunFailed, RuntimeError) and not issubclass(RunFailed, UserError)
    assert UserError("x").exit_code == 2 and RunFailed("x").exit_code == 1


def test_every_project_exception_derives_from_the_root():
    classes = _classes()
    rooted = {"FlywheelError"}
    changed = True
    while changed:
        changed = False
        for name, (_, bases) in classes.items():
            if name not in rooted and any(b in rooted for b in bases):
                rooted.add(name)
                changed = True
    strays = [
        f"{where}: {name}({', '.join(bases)})"
        for name, (where, bases) in classes.items()
        if name not in rooted and name not in CONTROL_FLOW and any(b in BUILTIN_EXCEPTIONS for b in bases)
    ]
    assert not strays, f"exception classes outside flywheel.errors: {strays}"
    assert len(rooted) >= 20  # the 19 classes the review counted, plus the root's own branches
    assert all(issubclass(c, FlywheelError) for c in (UserError, RunFailed, MissingInput))
