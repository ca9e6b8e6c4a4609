"""Caption types, structured-caption validation, post-checks, fusion and strict config."""

from __future__ import annotations

import json

import jsonschema
import pytest

from captioners.checks import CaptionChecks, is_degenerate, unseen_quotes
from captioners.config import CaptionConfig, ChecksConfig
from captioners.fuse import fuse, raw_facts
from captioners.structured import STRUCTURED_SCHEMA, first_json_object, from_ocr, parse_structured
from captioners.types import TYPES, parse_types
from flywheel.config import ConfigError, build

VALID = {
    "image_type": "photo",
    "style": "documentary",
    "entities": [{"name": "bus", "attributes": ["red"]}],
    "relations": [{"subject": "bus", "predicate": "on", "object": "street"}],
    "visible_text": [{"text": "OPEN", "script": "Latn", "lang": "en", "box": [1, 2, 3, 4], "height_px": 4}],
    "watermark": False,
    "anomalies": [],
}


def test_structured_parse_accepts_fenced_json_and_rejects_violations() -> None:
    fenced = "Here you go:\n```json\n" + json.dumps(VALID) + "\n```"
    assert parse_structured(fenced).value == VALID
    missing = dict(VALID)
    del missing["style"]
    bad = parse_structured(json.dumps(missing))
    assert not bad.ok and "style" in (bad.error or "")
    extra = parse_structured(json.dumps({**VALID, "mood": "happy"}))
    assert not extra.ok and "mood" in (extra.error or "")
    assert parse_structured("no json here").error == "no JSON object found in the output"
    assert "invalid JSON" in (parse_structured('{"a": }').error or "")
    assert first_json_object('x {"a": "}{"} y') == '{"a": "}{"}'


def test_ocr_structured_caption_fills_text_and_leaves_unknowns_null() -> None:
    value = from_ocr([{"text": "欢迎", "x": 1, "y": 2, "w": 30, "h": 12}], "Hani", "zh")
    jsonschema.validate(value, STRUCTURED_SCHEMA)
    assert value["visible_text"][0] == {
        "text": "欢迎",
        "script": "Hani",
        "lang": "zh",
        "box": [1, 2, 30, 12],
        "height_px": 12,
    }
    assert all(value[k] is None for k in ("image_type", "style", "entities", "relations", "watermark", "anomalies"))


def test_types_and_parse_types() -> None:
    assert set(TYPES) == {"general", "text", "knowledge", "structured"}
    assert TYPES["structured"].is_json and "visible_text" in TYPES["structured"].prompt
    assert parse_types("text, structured") == ("text", "structured")
    with pytest.raises(ValueError, match="unknown caption type"):
        parse_types("text,poem")


def test_post_checks_flag_problems() -> None:
    checks = CaptionChecks(ChecksConfig(language="en", max_tokens={"general": 20}))
    assert checks("general", "", check_language=True, ocr_text=None)[0] == ["empty"]
    flags, tokens = checks("general", "a red bus " * 12, check_language=True, ocr_text=None)
    assert "degenerate" in flags and "too_long" in flags and tokens > 20
    flags, _ = checks(
        "general", "Un autobus rouge roule dans une rue de Paris sous la pluie.", check_language=True, ocr_text=None
    )
    assert flags == ["language_mismatch"]
    flags, _ = checks(
        "text", 'The sign says "GRAND HOTEL" and "OPEN DAILY".', check_language=False, ocr_text="OPEN DAILY"
    )
    assert flags == ["unseen_text"]
    assert unseen_quotes('"OPEN DA1LY"', "OPEN DAILY") == []  # one misread character is not a claim
    assert is_degenerate("\n\n\n\n\n\n\n\n\n\n\n\n\n!!!!!!!!!!!!!!") and not is_degenerate("a cat on a mat")


def test_fuse_keeps_raw_only_facts_and_records_split() -> None:
    raw = 'Tourists at the Golden Gate Bridge in San Francisco, 1987, under a sign "Vista Point"'
    recap = "A wide photo of a red suspension bridge over water with people at a railing under fog."
    fused = fuse(raw, recap)
    assert fused.split == "fused"
    for fact in ("Golden Gate Bridge", "San Francisco", "1987", "Vista Point"):
        assert fact in (fused.caption or "")
    assert fused.caption.startswith(recap)
    assert "Tourists" not in raw_facts(raw)  # a sentence-initial word is not a name
    assert fuse(raw, None).split == "raw" and fuse(raw, None).caption == raw
    assert fuse(None, recap).split == "recaption"
    assert fuse("a bridge", "A bridge in fog.").caption == "A bridge in fog."


def test_config_is_strict_and_names_keys() -> None:
    with pytest.raises(ConfigError, match="unknown config key"):
        build(CaptionConfig, {"types": {"genral": "openai"}})
    with pytest.raises(ConfigError, match="cannot produce general"):
        build(CaptionConfig, {"types": {"general": "ocr"}}).validate()
    with pytest.raises(ConfigError, match=r"transformers\.model_path"):
        build(CaptionConfig, {"types": {"general": "transformers"}}).validate()
    with pytest.raises(ConfigError, match=r"openai\.base_url"):
        CaptionConfig().with_backend("openai", ("general",))
    cfg = CaptionConfig().with_backend("ocr", ("general", "text"))
    assert cfg.types.general is None and cfg.types.text == "ocr"
