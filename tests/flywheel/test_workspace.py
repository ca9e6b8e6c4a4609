"""Workspace bookkeeping under concurrent writers."""

import multiprocessing as mp

from flywheel.workspace import Workspace


def _register(root: str, key: str, barrier, out) -> None:
    barrier.wait()  # all four read-modify-write `_sources.json` at the same moment
    out.put((key, Workspace.at(root).source_offset(key, 3)))


def test_concurrent_source_registration_gets_distinct_offsets(tmp_path):
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_register, args=(str(tmp_path), f"folder:/src{i}", barrier, out)) for i in range(4)]
    for p in procs:
        p.start()
    got = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(got.values()) == [0, 3, 6, 9]  # disjoint partition ranges, one per source
    ws = Workspace.at(tmp_path)
    assert {k: ws.source_offset(k, 3) for k in got} == got  # and every source is on record


def test_workspace_names_every_folder(tmp_path) -> None:
    """The one map of the workspace: every folder other modules use comes from a Workspace method."""
    import pytest

    from flywheel.workspace import Workspace, WorkspaceError

    ws = Workspace.at(tmp_path)
    assert ws.captioned_dir("stage1") == tmp_path / "captioned" / "stage1"
    assert ws.tracks_dir("rl") == tmp_path / "tracks" / "rl"
    assert ws.index_dir == tmp_path / "index" and ws.index_config_path.parent == ws.index_dir
    assert ws.badcases_dir == tmp_path / "badcases" and ws.reservoirs_dir == tmp_path / "reservoirs"
    assert ws.turns_dir == tmp_path / "turns" and ws.evaluations_dir == tmp_path / "evaluations"
    assert ws.checkpoints_dir() == tmp_path / "checkpoints"
    assert ws.checkpoints_dir("s1") == tmp_path / "checkpoints" / "s1"
    assert ws.dashboards_dir == tmp_path / "dashboards"
    assert ws.export_dir("stage1", "webdataset") == tmp_path / "exports" / "stage1" / "webdataset"
    with pytest.raises(WorkspaceError):
        ws.captioned_dir("../x")
    with pytest.raises(WorkspaceError):
        ws.tracks_dir("a/b")
