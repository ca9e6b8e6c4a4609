"""`flywheel index --config` is stored beside the index; search, route and tracks read it back."""

from __future__ import annotations

import dataclasses

from flywheel.retrieval import AnnConfig, IndexConfig
from flywheel.workspace import Workspace


def test_config_round_trips_beside_the_index(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    assert IndexConfig.for_workspace(ws) == IndexConfig()  # nothing stored: defaults
    cfg = dataclasses.replace(IndexConfig(), text_max_length=32, ann=AnnConfig(min_rows=700, nprobes=3))
    path = cfg.store(ws)
    assert path == ws.index_dir / "index_config.yaml" and path.is_file()
    assert IndexConfig.for_workspace(ws) == cfg
