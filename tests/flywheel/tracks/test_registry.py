"""The track registry is the one declaration of track names: the store, the policy and the loop read it."""

from __future__ import annotations

import pytest

from flywheel.badcases.schema import ROUTABLE_TRACKS, TRACKS
from flywheel.errors import UserError
from flywheel.tracks import registry
from flywheel.tracks.common import TRACK_NAMES


def test_registry_declares_the_tracks_everyone_reads() -> None:
    assert registry.names() == ("rl", "pretrain", "prompt", "dismiss")
    assert registry.names() == TRACKS
    assert ROUTABLE_TRACKS == ("rl", "pretrain", "prompt")
    assert set(TRACK_NAMES) == {"pretrain", "rl", "prompt"} == set(registry.data_tracks())
    assert set(registry.training_tracks()) == {"pretrain", "rl"}
    from flywheel.recipes import MIX_SOURCES

    assert registry.mixable() == ("pretrain",) and MIX_SOURCES == ("tracks/pretrain",)


def test_every_data_track_resolves_its_builder() -> None:
    import importlib

    for name in registry.data_tracks():
        module, _, func = registry.get(name).builder.partition(":")  # type: ignore[union-attr]
        assert callable(getattr(importlib.import_module(module), func)), name


def test_unknown_and_duplicate_names_are_refused() -> None:
    with pytest.raises(UserError, match="unknown track 'nope'"):
        registry.get("nope")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(registry.Track("rl", "again", None))
    with pytest.raises(UserError, match="holds no data"):
        registry.get("dismiss").build(None)  # type: ignore[arg-type]
