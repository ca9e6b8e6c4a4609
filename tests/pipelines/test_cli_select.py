"""`flywheel select` as a user drives it: experiments get their own folder, bad recipes one line and exit 2."""

import json

from typer.testing import CliRunner

from flywheel.workspace import Workspace
from pipelines.cli import app
from tests.pipelines.test_cli import _tiny_pool

runner = CliRunner()


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_set_writes_beside_the_recipe_selection_and_records_the_overrides(tmp_path):
    _tiny_pool(Workspace.at(tmp_path))
    assert runner.invoke(app, ["select", "-w", str(tmp_path)]).exit_code == 0
    base = tmp_path / "selections" / "stage1_256p"
    before = (base / "funnel.json").read_text()
    loose = runner.invoke(app, ["select", "-w", str(tmp_path), "--set", "nsfw.max=1.0", "--json"])
    assert loose.exit_code == 0 and '"kept": 2' in loose.output
    (exp,) = [p for p in (tmp_path / "selections").iterdir() if p.name.startswith("stage1_256p+")]
    assert json.loads((exp / "recipe.json").read_text())["overrides"] == {"nsfw.max": "1.0"}
    assert (base / "funnel.json").read_text() == before  # the recipe's own selection is untouched
    named = runner.invoke(app, ["select", "-w", str(tmp_path), "--set", "nsfw.max=1.0", "--name", "loose"])
    assert named.exit_code == 0 and (tmp_path / "selections" / "loose" / "funnel.json").is_file()
    clash = runner.invoke(app, ["select", "-w", str(tmp_path), "--set", "nsfw.max=0.5", "--name", "stage1_256p"])
    assert "--replace" in _one_error_line(clash)
    forced = ["select", "-w", str(tmp_path), "--set", "nsfw.max=0.5", "--name", "stage1_256p", "--replace"]
    assert runner.invoke(app, forced).exit_code == 0


def test_hostile_or_wrong_recipes_are_one_line_errors(tmp_path):
    _tiny_pool(Workspace.at(tmp_path))
    leak = tmp_path / "leak.csv"
    cases = {
        "copy.yaml": f"name: copy\nrules:\n  - name: k\n    keep: \"TRUE); COPY (SELECT 1) TO '{leak}'; SELECT (1\"\n",
        "read.yaml": (
            "name: read\nrules:\n  - name: k\n    keep: \"(SELECT count(*) FROM read_csv('/etc/passwd')) > 0\"\n"
        ),
        "tasks.yaml": "name: tasks\ntasks: T2I\nrules: []\n",
        "typo.yaml": "name: typo\nrules:\n  - name: n\n    column: nsfw_scor\n    max: 0.5\n",
    }
    for name, body in cases.items():
        path = tmp_path / name
        path.write_text(body)
        _one_error_line(runner.invoke(app, ["select", "-w", str(tmp_path), "--recipe", str(path)]))
    assert not leak.exists()
    _one_error_line(runner.invoke(app, ["select", "-w", str(tmp_path), "--set", "nsfw.max=abc"]))
    _one_error_line(runner.invoke(app, ["select", "-w", str(tmp_path), "--set", "nsfw.keep=1; DROP TABLE s"]))


def test_semantic_dedup_on_a_pool_without_embeddings_names_the_filter_to_run(tmp_path):
    _tiny_pool(Workspace.at(tmp_path))
    path = tmp_path / "sem.yaml"
    path.write_text("name: sem\nrules:\n  - name: sem_dup\n    column: image_embedding\n    dedup: semantic\n")
    line = _one_error_line(runner.invoke(app, ["select", "-w", str(tmp_path), "--recipe", str(path)]))
    assert "no image_embedding column" in line and "`embedding` filter" in line


def test_rehash_catches_damage_that_the_verification_cache_trusts(tmp_path):
    """A bit flip that keeps size and mtime is invisible to the cache (tests/flywheel/test_store.py); `--rehash`
    hashes again and names the shard (exit 1)."""
    import os

    ws = Workspace.at(tmp_path)
    _tiny_pool(ws)
    assert runner.invoke(app, ["select", "-w", str(tmp_path)]).exit_code == 0
    (shard,) = ws.pool.shard_paths()
    st = shard.stat()
    data = bytearray(shard.read_bytes())
    data[40] ^= 0xFF
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    rehashed = runner.invoke(app, ["select", "-w", str(tmp_path), "--rehash"])
    assert rehashed.exit_code == 1 and shard.name in rehashed.output and "sha256" in rehashed.output
