"""Both VLM backends for real: a tiny random-weight Qwen2-VL through transformers, and served over HTTP.

Random weights produce garbage, which is the point for the structured caption: the output
fails validation, gets exactly one repair request, and is recorded as failed with both errors.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from captioners import columns as C
from captioners.captioner import Captioner
from captioners.config import CaptionConfig, GenerationConfig, OpenAIConfig, TransformersConfig, TypeBackends
from captioners.serve import LoopbackServer, build_app
from captioners.vlm import VlmRequest, bounded_png
from captioners.vlm_openai import OpenAIVlm
from captioners.vlm_transformers import TransformersVlm

BUDGET = GenerationConfig(max_new_tokens={"general": 6, "text": 6, "knowledge": 6, "structured": 6})


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_transformers_backend_captions_and_records_structured_failure(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    cfg = CaptionConfig(
        types=TypeBackends(general="transformers", text=None, knowledge="transformers", structured="transformers"),
        transformers=TransformersConfig(model_path=str(tiny_vlm_dir), batch_size=2, max_image_side=112),
        generation=BUDGET,
    )
    cfg.validate()
    captioner = Captioner(cfg, ("general", "knowledge", "structured"), tmp_path)
    out = captioner(
        [_png((200, 30, 30)), _png((30, 30, 200), (64, 120)), b"not an image"], ["A bus in Lisbon", None, None]
    )
    assert out["caption_general_status"] == [C.OK, C.OK, C.ERROR]
    assert all(isinstance(t, str) for t in out["caption_general"][:2])
    assert out["caption_general_backend"][0] == f"transformers:{tiny_vlm_dir.name}"
    assert "not decodable" in out["caption_general_error"][2]
    # Random weights cannot emit schema-valid JSON: validation -> one repair -> recorded failure.
    assert out["caption_structured_status"][:2] == [C.FAILED, C.FAILED]
    assert all("after one repair" in e for e in out["caption_structured_error"][:2])
    assert out["caption_structured"][:2] == [None, None]
    assert out["caption_split"][0] in ("fused", "raw")
    assert "Lisbon" in out["caption_fused"][0]


def test_transformers_batches_match_single_requests(tiny_vlm_dir: Path) -> None:
    vlm = TransformersVlm(TransformersConfig(model_path=str(tiny_vlm_dir), batch_size=3))
    reqs = [VlmRequest(_png(c), "Describe the image.", 5) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    batched = vlm.generate(reqs)
    single = [vlm.generate([r])[0] for r in reqs]
    assert [r.text for r in batched] == [r.text for r in single]  # left padding keeps batches exact
    assert all(0 < r.output_tokens <= 5 for r in batched)


def test_openai_client_against_loopback_server(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    model = TransformersVlm(TransformersConfig(model_path=str(tiny_vlm_dir)))
    app = build_app(model, model_name="tiny", fail_first=1)  # the first request gets a 503: retried
    with LoopbackServer(app) as url:
        client = OpenAIVlm(
            OpenAIConfig(base_url=url, model="tiny", concurrency=2, backoff_s=0.05, timeout_s=60), tmp_path / "cache"
        )
        reqs = [
            VlmRequest(bounded_png(Image.new("RGB", (80, 60), c), 112), "Describe.", 5)
            for c in ((10, 200, 10), (200, 200, 10), (10, 10, 10))
        ]
        first = client.generate(reqs)
        assert all(r.error is None and r.text is not None and not r.cached for r in first)
        assert client.retried == 1 and client.sent == 4
        direct = [model.generate([r])[0].text for r in reqs]
        assert [r.text for r in first] == direct  # the endpoint serves that same model
        again = OpenAIVlm(OpenAIConfig(base_url=url, model="tiny"), tmp_path / "cache")
        second = again.generate(reqs)
        assert again.sent == 0 and all(r.cached for r in second)  # a finished request is never re-sent
        assert [r.text for r in second] == [r.text for r in first]
        cfg = CaptionConfig(
            types=TypeBackends(general="openai", text=None, structured="openai"),
            openai=OpenAIConfig(base_url=url, model="tiny", backoff_s=0.05, max_image_side=112),
            generation=BUDGET,
        )
        out = Captioner(cfg, ("general", "structured"), tmp_path / "cache")([_png((1, 2, 3))], ["raw"])
        assert out["caption_general_status"] == [C.OK] and out["caption_general_backend"] == ["openai:tiny"]
        assert out["caption_structured_status"] == [C.FAILED]
    down = OpenAIVlm(
        OpenAIConfig(base_url=url, model="tiny", retries=1, backoff_s=0.01, timeout_s=2), tmp_path / "other-cache"
    )
    reply = down.generate([VlmRequest(_png((9, 9, 9)), "Describe.", 5)])[0]
    assert reply.text is None and "gave up after 2 attempts" in (reply.error or "")


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    from flywheel.config import ConfigError

    with pytest.raises(ConfigError, match=r"no config\.json"):
        TransformersVlm(TransformersConfig(model_path=str(tmp_path)))
