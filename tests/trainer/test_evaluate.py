"""Evaluation: real OCR/classifier/statistics signals, and results that satisfy flywheel/evaluation.py."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageFont

from flywheel.config import ConfigError
from flywheel.enhancer import OfflineEnhancer
from flywheel.evaluation import FAILURE_TAGS, check_evaluation_table
from flywheel.workspace import Workspace
from tests.trainer.fixtures import fixture_rows, write_curated
from tests.trainer.tiny import tiny_stage
from trainer.evaluate.metrics import (
    Tesseract,
    char_accuracy,
    edit_metrics,
    ink_score,
    quality_metrics,
    text_metrics,
)
from trainer.evaluate.prompts import SourceSpec, load_prompt_set
from trainer.evaluate.run import EvalSettings, evaluate, reward_of
from trainer.generate import load_pipeline
from trainer.loop import Trainer

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _word(text: str) -> Image.Image:
    image = Image.new("RGB", (160, 64), "white")
    ImageDraw.Draw(image).text((10, 12), text, fill="black", font=ImageFont.truetype(FONT, 30))
    return image


def test_ocr_reads_rendered_text_and_flags_blank_images():
    ocr = Tesseract()
    ocr.check()
    metrics, tags, read = text_metrics(ocr, _word("OPEN"), "OPEN")
    assert metrics["ocr_char_acc"] == 1.0 and tags == [], read
    metrics, tags, _ = text_metrics(ocr, _word("SHUT"), "OPEN")
    assert metrics["ocr_char_acc"] < 0.8 and tags == ["text_wrong"]
    metrics, tags, _ = text_metrics(ocr, Image.new("RGB", (64, 64), "white"), "OPEN")
    assert tags == ["text_unreadable"]
    assert char_accuracy("Cafe-24", "CAFE 24") == 1.0


def test_quality_and_edit_statistics_flag_the_obvious_failures():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    flat = Image.new("RGB", (64, 64), (128, 128, 128))
    photo = Image.fromarray(np.clip(np.add.outer(np.arange(64), np.arange(64)) * 2, 0, 255).astype(np.uint8)).convert(
        "RGB"
    )
    assert quality_metrics(noise)[1] == ["low_quality"]  # high-frequency energy of white noise
    assert quality_metrics(flat)[1] == ["low_quality"]
    assert quality_metrics(photo)[1] == []
    source = SourceSpec("circle", "red").render((64, 64))
    assert "edit_ignored" in edit_metrics(source, source)[1]
    assert "edit_destroyed" in edit_metrics(noise, source)[1]
    assert edit_metrics(SourceSpec("circle", "blue").render((64, 64)), source)[1] == []


def test_scores_are_continuous_and_order_outputs():
    """Soft scores move with the image (so seeds rank) while the hard tags stay where they were."""
    rng = np.random.default_rng(1)
    base = np.clip(np.add.outer(np.arange(64), np.arange(64)) * 2, 0, 255).astype(np.float32)
    scores = []
    for noise in (0, 10, 25, 60):
        im = Image.fromarray(np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)).convert("RGB")
        scores.append(quality_metrics(im)[0]["quality_score"])
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
    assert ink_score(_word("OPEN")) > ink_score(Image.new("RGB", (160, 64), "white")) + 0.2
    assert reward_of({"quality_score": 0.5, "label_prob": 1.0}) == pytest.approx(2.5 / 3)


def test_prompt_sets_are_validated(tmp_path):
    assert len(load_prompt_set("default").prompts) >= 10
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts:\n  - {id: a, category: object, prompt: a dog, expected_label: goldfsh}\n")
    with pytest.raises(ConfigError, match="goldfish"):
        load_prompt_set(bad)


def test_evaluate_writes_schema_valid_results_with_several_seeds(tmp_path, minilm):
    write_curated(tmp_path, rows=fixture_rows(4, 2, sizes=((32, 32),)))
    trainer = Trainer(
        tiny_stage(train={"steps": 3, "checkpoint_every": 3}),
        Workspace.at(tmp_path),
        encoder=minilm,
        log=lambda _: None,
    )
    ckpt = trainer.run().checkpoints[-1]
    prompts = tmp_path / "p.yaml"
    prompts.write_text(
        "name: mini\nprompts:\n"
        "  - {id: t, category: text, prompt: 'the word \"OPEN\"', expected_text: OPEN}\n"
        "  - {id: o, category: object, prompt: a goldfish, expected_label: goldfish}\n"
        "  - {id: e, category: edit, task: TI2I, prompt: make it blue, source: {shape: circle, color: red}}\n"
    )
    pipe = load_pipeline(ckpt, device="cpu", encoder=minilm)
    result = evaluate(
        pipe,
        load_prompt_set(prompts),
        tmp_path / "evaluations",
        EvalSettings(seeds=(0, 1, 2), steps=2, enhancer=OfflineEnhancer()),
        log=lambda _: None,
    )
    table = pq.read_table(result.out_dir / "results.parquet")
    checked = check_evaluation_table(table)
    assert checked.num_rows == 9 and result.out_dir.name == "test_tiny-step-0000003"
    rows = checked.to_pylist()
    assert sorted((r["prompt_id"], r["seed"]) for r in rows) == sorted((p, s) for p in "toe" for s in (0, 1, 2))
    # continuous rewards: the seeds of every prompt rank (no ties), which the RL track needs
    for pid in "toe":
        rewards = [r["reward"] for r in rows if r["prompt_id"] == pid]
        assert len({round(x, 6) for x in rewards}) == 3, rewards
    assert result.summary["ties"] == {"prompts": 3, "prompts_with_tied_rewards": 0}
    # the enhancer's rewrite is what the model got; the asked prompt stays in `prompt`
    text_row = next(r for r in rows if r["prompt_id"] == "t")
    assert text_row["prompt"] == 'the word "OPEN"' and text_row["enhanced_prompt"].startswith("A clear, legible image")
    for r in rows:
        names = dict(r["metrics"])
        assert 0.0 <= r["reward"] <= 1.0 and set(r["failure_tags"]) <= set(FAILURE_TAGS)
        assert r["passed"] == (not r["failure_tags"]) and r["step"] == 3
        assert {"entropy_bits", "contrast", "quality_score"} <= set(names)
        assert Image.open(__import__("io").BytesIO(r["output_image"])).size == (32, 32)
        if r["prompt_id"] == "t":
            assert "ocr_char_acc" in names and 0.0 <= names["ink_score"] <= 1.0
        if r["prompt_id"] == "o":
            assert 0.0 <= names["label_prob"] <= 1.0
        if r["prompt_id"] == "e":
            assert r["source_image"] is not None and "source_corr" in names
    bad = pq.read_table(result.out_dir / "bad_cases.parquet")
    assert bad.num_rows == result.failed == sum(not r["passed"] for r in rows)
