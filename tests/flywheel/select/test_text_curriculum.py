"""Stage 3's text split (synth renders and languages) and the three text-curriculum recipes on a small pool."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from flywheel.config import ConfigError
from flywheel.recipes import load_recipe
from flywheel.select import select
from flywheel.workspace import Workspace
from tests.flywheel.select.pools import write_pool


def _synth(kind: str, lines: list[str]) -> str:
    return json.dumps({"synth": {"kind": kind, "lines": lines, "script": "Latn", "lang": "en"}})


def _text(lines: int, chars: int, height: float, language: str = "en") -> dict:
    return {"text_lines": lines, "text_chars": chars, "text_char_height_min": height, "text_language": language}


ROWS = [
    {"id": "photo", **_text(0, 0, None, "none")},
    {"id": "sign_en", **_text(2, 14, 30.0)},
    {"id": "sign_zh", **_text(1, 4, 40.0, "zh")},
    {"id": "small_print", **_text(2, 20, 9.0)},  # small characters: not simple text
    {"id": "paragraph", **_text(9, 400, 18.0)},
    {"id": "unscored"},  # the text scorer did not judge it
    {"id": "synth_pure", "meta": _synth("pure", ["OPEN"]), **_text(1, 4, 50.0)},
    {"id": "synth_sign", "meta": _synth("compositional", ["CAFE", "since 1920"]), **_text(2, 13, 20.0)},
    {"id": "synth_complex", "meta": _synth("complex", ["a"] * 12), **_text(12, 300, 14.0)},
]


def _kept(ws: Workspace, recipe: str) -> dict[str, str]:
    sel = select(ws, load_recipe(recipe))
    sel.funnel.check()
    table = pq.read_table(sorted(sel.out_dir.glob("part-*.parquet")), columns=["id", "category"])
    return dict(zip(table.column("id").to_pylist(), table.column("category").to_pylist(), strict=True))


@pytest.fixture
def ws(tmp_path) -> Workspace:
    workspace = Workspace.at(tmp_path / "ws")
    write_pool(workspace, ROWS)
    return workspace


def test_stage3_splits_synthetic_renders_and_languages(ws) -> None:
    kept = _kept(ws, "stage3_512p")
    assert kept == {
        "photo": "non_text",
        "sign_en": "text_en",
        "sign_zh": "text_zh",
        "small_print": "text_en",
        "paragraph": "text_en",
        "unscored": "non_text",
        "synth_pure": "synthetic",
        "synth_sign": "synthetic",
        "synth_complex": "synthetic",
    }


def test_each_curriculum_step_selects_its_rows(ws) -> None:
    assert set(_kept(ws, "text_curriculum_1_non_text")) == {"photo"}
    step2 = _kept(ws, "text_curriculum_2_simple_text")
    assert set(step2) == {"photo", "sign_en", "sign_zh", "synth_pure", "synth_sign"}
    step3 = _kept(ws, "text_curriculum_3_paragraph")
    assert set(step3) == {r["id"] for r in ROWS}
    assert {i for i, c in step3.items() if c == "paragraph"} == {"paragraph", "synth_complex"}
    assert {i for i, c in step3.items() if c == "non_text"} == {"photo", "unscored"}
    funnel = json.loads((ws.selection_dir("text_curriculum_2_simple_text") / "funnel.json").read_text())
    assert funnel["removed_by_rule"]["curriculum_simple_text"] == 4  # small print, paragraph, unscored, complex


def test_extends_replaces_rules_by_name_and_refuses_itself(tmp_path) -> None:
    path = tmp_path / "looser.yaml"
    path.write_text("extends: stage3_512p\nrules:\n  - {name: nsfw, column: nsfw_score, max: 0.9}\n")
    recipe = load_recipe(str(path))
    assert recipe.name == "looser" and recipe.rule("nsfw").max == 0.9
    assert [r.name for r in recipe.rules] == [r.name for r in load_recipe("stage3_512p").rules]
    path.write_text("extends: looser.yaml\n")
    with pytest.raises(ConfigError, match="cannot extend itself"):
        load_recipe(str(path))


def test_extends_puts_new_filters_before_dedup_and_ranking_rules_last(tmp_path) -> None:
    """New rules are judged before duplicates are; a `top:` rule ranks what every other rule kept (sft's shape)."""
    path = tmp_path / "ranked.yaml"
    path.write_text(
        "extends: stage1_256p\nrules:\n"
        "  - {name: sharp, column: v1_blur, max: 0.4}\n"
        "  - {name: best_half, column: aesthetic_score, top: 0.5}\n"
    )
    names = [r.name for r in load_recipe(str(path)).rules]
    assert names.index("sharp") < names.index("exact_dup") < names.index("near_dup") < names.index("best_half")
    assert names[-1] == "best_half"
    sft = [r.name for r in load_recipe("sft").rules]
    assert sft[-2:] == ["top_quality", "top_aesthetics"] and sft.index("near_dup") < sft.index("top_quality")
