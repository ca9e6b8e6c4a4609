"""Caption types are one registry: config defaults, backend capabilities and caption columns follow it."""

from __future__ import annotations

import dataclasses

import pytest

from captioners.columns import CAPTION_REGISTRY
from captioners.config import CAPABLE, CaptionConfig, ChecksConfig, GenerationConfig, TypeBackends
from captioners.types import CAPTION_TYPES, TYPES, CaptionType, needs_ocr, register
from flywheel.config import ConfigError, build


def test_settings_come_from_the_type_objects() -> None:
    assert CAPTION_TYPES == ("general", "text", "knowledge", "structured")
    assert [f.name for f in dataclasses.fields(TypeBackends)] == list(CAPTION_TYPES)
    assert TypeBackends() == TypeBackends(general=None, text="ocr", knowledge=None, structured="ocr")
    assert TypeBackends().get("text") == "ocr"
    assert ChecksConfig().max_tokens == {"general": 512, "text": 1024, "knowledge": 512, "structured": 1536}
    assert GenerationConfig().max_new_tokens == {"general": 256, "text": 256, "knowledge": 192, "structured": 384}
    assert CAPABLE["ocr"] == ("text", "structured")
    assert needs_ocr(("general", "text")) and not needs_ocr(("general", "knowledge"))
    for name, ctype in TYPES.items():
        col = CAPTION_REGISTRY[f"caption_{name}"]
        assert ctype.description in col.description
        assert col.unit == ("json" if ctype.is_json else "")


def test_type_backends_stay_strict() -> None:
    with pytest.raises(ConfigError, match="poem"):
        build(CaptionConfig, {"types": {"poem": "ocr"}})
    assert build(CaptionConfig, {"types": {"general": None}}).types.general is None


def test_a_type_registers_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(CaptionType("text", "p", "d"))
