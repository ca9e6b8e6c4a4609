"""The labeled demo corpus must say the truth about every file, or filter tests built on it lie."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from corpus import variants as V
from corpus.build import CorpusPlan, build_corpus, main
from flywheel.imaging import BROKEN_REASONS, decode
from tests.datagen import CorpusInfo, labels_by_file, load_labels, small_corpus

LABEL_KEYS = {
    "file",
    "kind",
    "broken",
    "mislabeled",
    "rotated",
    "exif_orientation",
    "exact_dup_of",
    "near_dup_of",
    "blank",
    "tiny",
    "caption_issue",
    "script",
    "text",
}
BROKEN = {"zero_byte", "not_image", "truncated", "decompression_bomb", "unsupported_mode"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusInfo:
    return small_corpus(tmp_path_factory.mktemp("a"))


@pytest.fixture(scope="module")
def labels(corpus: CorpusInfo) -> list[dict[str, Any]]:
    return load_labels(corpus.labels_path)


def _bytes(corpus: CorpusInfo, label: dict[str, Any]) -> bytes:
    return (corpus.images_dir / label["file"]).read_bytes()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_other_seed_differs(corpus: CorpusInfo, tmp_path: Path) -> None:
    again = small_corpus(tmp_path / "b")
    first, second = _tree(corpus.labels_path.parent), _tree(again.labels_path.parent)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    other = small_corpus(tmp_path / "c", seed=1)
    assert _tree(other.labels_path.parent)["images/img_0001.jpg"] != first["images/img_0001.jpg"]


def test_layout_and_schema(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    assert corpus.labels_path.parent == corpus.images_dir.parent  # answers never sit in the ingested folder
    assert 40 <= len(labels) <= 60 and corpus.n_samples == len(labels)
    assert sum(corpus.counts.values()) == len(labels)
    for label in labels:
        assert label.keys() >= LABEL_KEYS, label["file"]
        assert (corpus.images_dir / label["file"]).is_file()
        assert label["broken"] is None or label["broken"] in BROKEN_REASONS


def test_every_label_kind_is_present(labels: list[dict[str, Any]]) -> None:
    def values(key: str) -> set[Any]:
        return {label[key] for label in labels}

    assert {"photo", "text", "blank", "junk", "edit"} <= values("kind")
    assert values("broken") >= BROKEN
    assert {"missing", "empty", "placeholder", "garbled", "repetitive"} <= values("caption_issue")
    assert {0, 90, 180, 270} <= values("rotated")
    assert values("exif_orientation") - {None}
    assert {"Latn", "Cyrl", "Hans", "Jpan", "Kore", "Arab", "Deva", "Thai"} <= values("script")
    for flag in ("mislabeled", "blank", "tiny"):
        assert True in values(flag), flag
    for ref in ("exact_dup_of", "near_dup_of"):
        assert values(ref) - {None}, ref
    assert "TI2I" in values("task")


def test_broken_files_fail_with_the_labeled_reason_and_the_rest_decode(
    corpus: CorpusInfo, labels: list[dict[str, Any]]
) -> None:
    for label in labels:
        decoded = decode(_bytes(corpus, label))
        assert decoded.broken_reason == label["broken"], (label["file"], decoded.broken_detail)
        if label["broken"] is None:
            assert decoded.ok and decoded.format == label["format"], label["file"]
            assert (decoded.width, decoded.height) == (label["width"], label["height"]), label["file"]


def test_bombs_are_tiny_files_claiming_huge_sizes(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    bombs = [label for label in labels if label["broken"] == "decompression_bomb"]
    assert {label["format"] for label in bombs} == {"PNG", "JPEG"}
    for label in bombs:
        assert len(_bytes(corpus, label)) < 4096 and label["width"] * label["height"] > 10**9


def test_duplicates(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    by_file = {label["file"]: label for label in labels}
    for label in labels:
        if label["exact_dup_of"]:
            assert _bytes(corpus, label) == _bytes(corpus, by_file[label["exact_dup_of"]])
            assert label["file"] > label["exact_dup_of"]  # originals sort first: "keep first" keeps them
        if label["near_dup_of"]:
            original = by_file[label["near_dup_of"]]
            assert _bytes(corpus, label) != _bytes(corpus, original)
            assert label["width"] < original["width"] and 0 <= label["phash_distance"] <= 12


def test_rotated_copies_are_pixel_rotations_of_their_original(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    by_file = {label["file"]: label for label in labels}
    rotated = [label for label in labels if label["rotated"]]
    assert {label["rotated"] for label in rotated} == {90, 180, 270}
    for label in rotated:
        original = by_file[label["derived_from"]]
        swapped = label["rotated"] in (90, 270)
        w, h = original["width"], original["height"]
        expected = (h, w) if swapped else (w, h)
        assert (label["width"], label["height"]) == expected
        copy = decode(_bytes(corpus, label), view_short_side=4096).rgb.astype(np.float32)
        upright = decode(_bytes(corpus, original), view_short_side=4096).rgb.astype(np.float32)
        errors = {
            deg: float(np.abs(np.rot90(upright, -deg // 90) - copy).mean())
            for deg in (90, 180, 270)
            if np.rot90(upright, -deg // 90).shape == copy.shape
        }
        assert min(errors, key=errors.__getitem__) == label["rotated"] and errors[label["rotated"]] < 8


def test_exif_copies_are_stored_turned_and_display_upright(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    tagged = [label for label in labels if label["exif_orientation"]]
    assert tagged and all(label["rotated"] == 0 for label in tagged)
    for label in tagged:
        decoded = decode(_bytes(corpus, label), view_short_side=4096)
        assert decoded.exif_orientation == label["exif_orientation"]
        if label["exif_orientation"] in (5, 6, 7, 8):
            assert decoded.rgb.shape[:2] == (decoded.width, decoded.height)  # transposed for display


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_oriented_jpeg_round_trips_through_decode(orientation: int) -> None:
    yy, xx = np.mgrid[0:96, 0:160]
    upright = np.stack([xx * 1.5, yy * 2.5, (xx + yy) % 64 * 4], axis=-1).astype(np.uint8)
    data = V.exif_oriented_jpeg(Image.fromarray(upright), orientation, 95)
    view = decode(data, view_short_side=4096).rgb
    assert view.shape == upright.shape
    assert float(np.abs(view.astype(np.float32) - upright).mean()) < 4


def test_text_labels(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    texts = [label for label in labels if label["kind"] == "text"]
    assert texts
    for label in texts:
        assert label["text"] and label["text"].strip() and label["script"] and label["shaped"]
        assert f'"{" ".join(label["text"].split(chr(10)))}"' in label["caption"]
    assert all(label["text"] is None for label in labels if label["kind"] != "text")


def test_sidecars_match_labels(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    for label in labels:
        txt = (corpus.images_dir / label["file"]).with_suffix(".txt")
        if label["caption_issue"] == "missing" or label["task"] == "TI2I":
            assert not txt.exists()
        else:
            assert txt.read_text(encoding="utf-8") == label["caption"]
        if label["caption_issue"] == "empty":
            assert label["caption"].strip() == ""
    labeled = {label["file"] for label in labels}
    for label in labels:
        if label["task"] == "TI2I":
            sidecar = json.loads((corpus.images_dir / label["file"]).with_suffix(".json").read_text("utf-8"))
            expected = {"task": "TI2I", "source": label["edit_source"], "instruction": label["instruction"]}
            assert sidecar == expected
            assert (corpus.images_dir / sidecar["source"]).is_file() and sidecar["source"] not in labeled
            assert decode((corpus.images_dir / sidecar["source"]).read_bytes()).ok


def test_flags_match_pixels_and_extensions(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    ext_format = {"jpg": "JPEG", "png": "PNG", "tif": "TIFF"}
    for label in labels:
        if label["broken"]:
            continue
        decoded = decode(_bytes(corpus, label))
        assert label["tiny"] == (min(decoded.width, decoded.height) < 64), label["file"]
        assert label["mislabeled"] == (ext_format[label["file"].rsplit(".", 1)[1]] != decoded.format)
        spread = float(decoded.gray.astype(np.float32).std())
        assert (spread < 4) if label["blank"] else (spread > 8), (label["file"], spread)


def test_missing_fonts_skip_scripts_without_crashing(tmp_path: Path) -> None:
    info = build_corpus(tmp_path, plan=CorpusPlan.small(), font_dirs=(tmp_path / "no-fonts",))
    assert set(info.missing_scripts) >= {"Latn", "Arab"} and info.scripts == []
    assert "text" not in info.counts and info.counts["photo"] > 0
    assert any(label["mislabeled"] for label in load_labels(info.labels_path))


def test_cli_refuses_to_mix_with_an_existing_corpus(tmp_path: Path) -> None:
    assert main([str(tmp_path), "--small"]) == 0
    assert main([str(tmp_path), "--small"]) == 2
    assert main([str(tmp_path), "--small", "--overwrite", "--seed", "3"]) == 0
    assert len(labels_by_file(tmp_path / "labels.jsonl")) >= 40


def test_stored_exif_header_is_what_the_label_says(corpus: CorpusInfo, labels: list[dict[str, Any]]) -> None:
    for label in labels:
        if label["exif_orientation"]:
            with Image.open(io.BytesIO(_bytes(corpus, label))) as img:
                assert img.getexif().get(0x0112) == label["exif_orientation"]
                assert img.size == (label["width"], label["height"])


def test_without_raqm_complex_scripts_are_flagged_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corpus import text as demo_text

    monkeypatch.setattr(demo_text.features, "check", lambda name: False)  # as on a Pillow built without raqm
    info = build_corpus(tmp_path, plan=CorpusPlan.small())
    assert info.layout_engine == "BASIC" and any("Arab" in line for line in info.shaping_caveats)
    shaped = {label["script"]: label["shaped"] for label in load_labels(info.labels_path) if label["script"]}
    assert shaped["Arab"] is False and shaped["Deva"] is False and shaped["Latn"] is True
