"""A tiny random-weight Qwen2-VL saved to disk once per session (built from config; no download)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from captioners.tiny_vlm import build_random_vlm

    out = tmp_path_factory.mktemp("tiny-qwen2-vl")
    build_random_vlm(out, "tiny", seed=0)
    return out
