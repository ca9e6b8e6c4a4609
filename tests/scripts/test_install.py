"""scripts/install.sh: installs into the active virtualenv, says what it does, and skips pip when nothing changed.

pip itself is not run here (minutes, and it would re-point the shared environment): the virtualenv's
`python` is a stub that logs each call and, for the import check, answers like the installed package.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the install script with the files its stamp hashes, and a fake flywheel package."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "install.sh", repo / "scripts" / "install.sh")
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, repo / name)
    (repo / "flywheel").mkdir()
    (repo / "flywheel" / "__init__.py").write_text("")
    return repo


def _venv(tmp_path: Path, repo: Path) -> Path:
    """A virtualenv whose python logs `-m pip` calls and runs everything else with the checkout importable."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "pip.log"
    stub = venv / "bin" / "python"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$0 $*" >> {log}; exit 0; fi\n'
        'if [ "$1" = "-I" ]; then shift; fi\n'
        f"PYTHONPATH={repo} exec {sys.executable} -c "
        f'"import sys; sys.prefix = {str(venv)!r}; exec(sys.argv[1])" "${{@:2}}"\n'
    )
    stub.chmod(0o755)
    return venv


def _run(repo: Path, venv: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "FLYWHEEL_SKIP_APT": "1", "PATH": os.environ["PATH"]}
    env.pop("PYTHONPATH", None)
    started = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "install.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    return proc, time.perf_counter() - started


def test_install_uses_the_virtualenv_prints_steps_and_skips_pip_when_unchanged(tmp_path, checkout):
    venv = _venv(tmp_path, checkout)
    log = tmp_path / "pip.log"
    first, _ = _run(checkout, venv)
    assert first.returncode == 0, first.stderr
    assert log.read_text().count("-m pip install") == 1
    assert str(venv / "bin" / "python") in log.read_text()  # the venv's python, not the first python3 on PATH
    assert "[install 1/3]" in first.stdout and "[install 2/3]" in first.stdout and "[install 3/3] ok" in first.stdout
    assert "--quiet" not in log.read_text()

    again, seconds = _run(checkout, venv)
    assert again.returncode == 0 and "skipping pip" in again.stdout
    assert log.read_text().count("-m pip install") == 1 and seconds < 10

    (checkout / "constraints.txt").write_text((checkout / "constraints.txt").read_text() + "\n# changed\n")
    changed, _ = _run(checkout, venv)
    assert changed.returncode == 0 and log.read_text().count("-m pip install") == 2
