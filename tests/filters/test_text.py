"""TextScorer: English and Chinese renders split into en/zh, a text-free photo gets `none`, heights in stored px."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageFont

import flywheel.models.ocr as ocr_module
from filters.base import ModelConfigError
from filters.config import ScoringConfig, TextConfig
from filters.registry import filter_names
from filters.text import TextScorer
from flywheel.models.ocr import dominant_script, language_split, unavailable_reason
from pipelines.steps.score import check_models
from pipelines.steps.score_stages import COUNTERS, EXPECTED, ModelStage, input_column

FONT_PX = 40
FONTS = {
    "en": Path("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"),
    "zh": Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
}
LINES = {"en": "Fresh Coffee Every Morning", "zh": "欢迎光临城市图书馆"}

needs_ocr = pytest.mark.skipif(unavailable_reason() is not None, reason=f"rapidocr: {unavailable_reason()}")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _render(lang: str, scale: int = 1) -> bytes:
    """One line of `lang` in a Noto face at FONT_PX * scale px, dark on a light background."""
    if not FONTS[lang].is_file():
        pytest.skip(f"font {FONTS[lang]} is not installed (fonts-noto-core / fonts-noto-cjk)")
    # Face 2 of the Debian CJK collection is Simplified Chinese.
    font = ImageFont.truetype(str(FONTS[lang]), FONT_PX * scale, index=2 if lang == "zh" else 0)
    img = Image.new("RGB", (760 * scale, 140 * scale), (245, 240, 228))
    ImageDraw.Draw(img).text((30 * scale, 40 * scale), LINES[lang], font=font, fill=(30, 30, 40))
    return _png(img)


@pytest.fixture(scope="module")
def scorer() -> TextScorer:
    s = TextScorer.from_config(ScoringConfig(text=TextConfig(device="cpu", batch_size=4)))
    s.load()
    return s


@needs_ocr
def test_language_split_of_renders_and_a_photo(scorer: TextScorer) -> None:
    photo = _png(Image.fromarray(skimage.data.chelsea()))
    out = scorer.score_images([_render("en"), _render("zh"), photo])
    assert out["text_language"] == ["en", "zh", "none"]
    assert out["text_script"] == ["latin", "han", None]
    assert out["ocr_text"][:2] == [LINES["en"], LINES["zh"]]
    assert out["text_lines"] == [1, 1, 0]
    assert out["text_chars"] == [len(LINES["en"].replace(" ", "")), len(LINES["zh"]), 0]
    assert 0.05 < out["text_area_fraction"][0] < 0.6 and out["text_area_fraction"][2] == 0.0
    # Character heights approximate the em size; null when there is no text.
    for i in (0, 1):
        assert 0.7 * FONT_PX < out["text_char_height_median"][i] < 1.3 * FONT_PX
    assert out["text_char_height_min"][2] is None and out["text_char_height_median"][2] is None


@needs_ocr
def test_heights_are_in_stored_pixels_when_the_view_is_reduced() -> None:
    small_view = TextScorer(TextConfig(device="cpu", max_side=760))  # the 1520 px wide render is halved
    out = small_view.score_images([_render("en", scale=2)])
    assert out["ocr_text"] == [LINES["en"]]
    assert 0.7 * 2 * FONT_PX < out["text_char_height_median"][0] < 1.3 * 2 * FONT_PX


@needs_ocr
def test_actor_stage_hands_the_scorer_the_stored_bytes() -> None:
    """ModelStage passes the `image` column to a `wants_images` scorer; undecodable rows stay null."""
    images = [_render("en"), None]
    table = pa.table(
        {
            "image": pa.array(images, pa.binary()),
            "caption": pa.array([None, None], pa.string()),
            input_column("text"): pa.array([b"\x01", None], pa.binary()),
            EXPECTED: pa.array([2, 2], pa.int32()),
            COUNTERS: pa.array([json.dumps({}), None], pa.string()),
        }
    )
    stage = ModelStage(TextScorer, ScoringConfig(text=TextConfig(device="cpu")))
    out = stage(table)
    assert out.column("text_language").to_pylist() == ["en", None]
    assert input_column("text") not in out.column_names


def test_script_and_language_rules() -> None:
    assert dominant_script("咖啡 Coffee") == "han"  # CJK characters outweigh the Latin letters of a word
    assert dominant_script("コーヒー 珈琲") == "japanese"
    assert dominant_script("2024") is None
    assert language_split("", None, has_lines=False) == "none"
    assert language_split("OPEN", "latin", has_lines=True) == "en"  # short signs default to English
    assert language_split("Bienvenue dans notre boulangerie du quartier", "latin", has_lines=True) == "other"
    assert language_split("", "unknown", has_lines=True) == "other"


def test_missing_package_is_one_clear_model_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ocr_module.importlib.util.find_spec
    monkeypatch.setattr(
        ocr_module.importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else real(name, *a)
    )
    reason = unavailable_reason()
    assert reason is not None and "pip install rapidocr" in reason
    with pytest.raises(ModelConfigError) as err:
        TextScorer().load()
    assert "\n" not in str(err.value) and "rapidocr" in str(err.value)
    with pytest.raises(ModelConfigError, match="filter text cannot run"):
        check_models([TextScorer], ScoringConfig(), log=lambda _: None)


def test_registered_and_off_by_default() -> None:
    assert "text" in filter_names()
    assert TextScorer.default_on is False
    assert {c.name for c in TextScorer.columns} == {
        "text_area_fraction",
        "text_lines",
        "text_chars",
        "text_char_height_min",
        "text_char_height_median",
        "ocr_text",
        "text_script",
        "text_language",
    }
    assert np.dtype("int32") == TextScorer.columns[1].dtype.to_pandas_dtype()


@needs_ocr
def test_flywheel_score_writes_the_text_columns(tmp_path: Path, ray_session: None) -> None:
    """`flywheel score --filters text` end to end: the actor pool decodes the stored bytes itself."""
    import pyarrow.parquet as pq

    from flywheel.workspace import Workspace
    from pipelines.steps.score import score

    src = tmp_path / "src"
    src.mkdir()
    (src / "sign.png").write_bytes(_render("en"))
    (src / "cat.png").write_bytes(_png(Image.fromarray(skimage.data.chelsea())))
    ws = Workspace.at(tmp_path / "ws")
    score(str(src), ws, filters=["text"], cfg=ScoringConfig(text=TextConfig(device="cpu")), log=lambda _: None)
    rows = {Path(r["uri"]).name: r for r in pq.read_table(ws.pool.shard_paths()).to_pylist()}
    assert rows["sign.png"]["ocr_text"] == LINES["en"] and rows["sign.png"]["text_language"] == "en"
    assert rows["cat.png"]["text_language"] == "none" and rows["cat.png"]["text_lines"] == 0
