"""Prompt enhancers: offline from the prompt track's pairs, online through an OpenAI-compatible endpoint."""

import json

import httpx
import pyarrow as pa
import pytest

from flywheel.config import ConfigError
from flywheel.enhancer import EndpointEnhancer, EnhancerError, OfflineEnhancer, load_enhancer
from flywheel.store.shards import ShardStore
from flywheel.tracks.rewrite import intent_violations


def _track(root):
    store = ShardStore(root / "tracks" / "prompt")
    store.write(
        0,
        pa.table(
            {
                "prompt": ["a red bus", "two cats"],
                "rewrite": ["A photo of a red bus, on a rainy street in London, sharp focus", "A photo of two cats"],
                "badcase_id": ["c1", "c2"],
            }
        ),
        "track:prompt",
    )
    store.write_manifest({})


def test_offline_enhancer_uses_pairs_and_expands_unseen_prompts(tmp_path):
    _track(tmp_path)
    enhancer = load_enhancer("offline", tmp_path)
    assert isinstance(enhancer, OfflineEnhancer) and len(enhancer.pairs) == 2
    seen, unseen = enhancer.enhance(["A red  bus", "a blue bus without passengers"])
    assert seen.startswith("A photo of a red bus, on a rainy street")
    assert "a blue bus without passengers" in unseen and "on a rainy street in London" in unseen
    assert intent_violations("a blue bus without passengers", unseen) == []


def test_offline_enhancer_without_track_is_rules_only(tmp_path):
    (out,) = load_enhancer("offline", tmp_path).enhance(["can you draw three owls, no moon"])
    assert out.startswith("A photo of three owls, no moon") and not intent_violations("three owls, no moon", out)


def test_endpoint_enhancer_falls_back_when_the_answer_breaks_intent():
    def handler(request: httpx.Request) -> httpx.Response:
        user = json.loads(request.content)["messages"][1]["content"]
        answer = "a cup with a saucer" if "saucer" in user else f"A detailed photo of {user}, studio light"
        return httpx.Response(200, json={"choices": [{"message": {"content": answer}}]})

    enh = EndpointEnhancer("http://llm/v1", "m", client=httpx.Client(transport=httpx.MockTransport(handler)))
    good, bad = enh.enhance(["a lemon on a plate", "three cups, no saucers"])
    assert good == "A detailed photo of a lemon on a plate, studio light"
    assert enh.fallbacks == 1 and "three cups, no saucers" in bad

    down = EndpointEnhancer(
        "http://llm/v1", "m", client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    )
    with pytest.raises(EnhancerError, match="failed"):
        down.enhance(["x"])


def test_load_enhancer_rejects_bad_specs(tmp_path, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_ENHANCER_MODEL", raising=False)
    with pytest.raises(ConfigError, match="offline"):
        load_enhancer("magic", tmp_path)
    with pytest.raises(ConfigError, match="model"):
        load_enhancer("http://localhost:8000/v1", tmp_path)
    assert isinstance(load_enhancer("http://localhost:8000/v1", tmp_path, model="qwen"), EndpointEnhancer)
