"""The dependency rules of docs/architecture.md hold by import, and the docs link only inside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("flywheel", "filters", "captioners", "trainer", "pipelines", "dashboards", "corpus", "bench", "tests")

# package -> the project packages it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "flywheel": set(),
    "filters": {"flywheel"},
    "captioners": {"flywheel"},
    "trainer": {"flywheel"},
    "dashboards": {"flywheel"},
    "corpus": {"flywheel"},
    "pipelines": {"flywheel", "filters", "captioners", "trainer", "dashboards", "corpus"},
}

# Open exceptions, by (file, imported module). The test fails if one is added and when one is fixed (so the
# entry must be removed): docs/architecture.md names each and how it is to be fixed.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def _imports(path: Path) -> list[str]:
    """Absolute modules imported anywhere in the file (top level, in functions, under TYPE_CHECKING)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def _violations() -> set[tuple[str, str]]:
    bad = set()
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in _imports(path):
                top = module.split(".")[0]
                if top in PROJECT and top != package and top not in allowed:
                    bad.add((str(path.relative_to(ROOT)), module))
    return bad


def test_every_package_imports_only_what_the_rules_allow():
    found = _violations()
    new = sorted(found - KNOWN_EXCEPTIONS)
    assert not new, f"imports that break the rules of docs/architecture.md: {new}"
    fixed = sorted(KNOWN_EXCEPTIONS - found)
    assert not fixed, f"fixed exceptions still listed in KNOWN_EXCEPTIONS (remove them): {fixed}"


def test_the_import_parser_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\n\ndef f():\n    from filters.clip_score import clip_view\n    import trainer.loop\n")
    assert _imports(probe) == ["os", "filters.clip_score", "trainer.loop"]


def test_pipelines_root_holds_only_a_handful_of_files():
    files = sorted(p.name for p in (ROOT / "pipelines").iterdir() if p.is_file() and p.suffix == ".py")
    assert files == ["__init__.py", "ray_runtime.py"]


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_and_docs_link_only_inside_the_repository():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = []
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        if "../shared" in text:
            problems.append(f"{doc.name}: mentions ../shared (outside the repository)")
        for target in _LINK.findall(text):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            resolved = (doc.parent / target.split("#", 1)[0]).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                problems.append(f"{doc.name}: link {target} does not resolve inside the repository")
    assert not problems, problems
