"""`flywheel evaluate`: render the prompt set from a checkpoint with several seeds, score, write Parquet.

    WORKSPACE/evaluations/<stage>-step-NNNNNNN/results.parquet    every output (flywheel/evaluation.py schema)
    WORKSPACE/evaluations/<stage>-step-NNNNNNN/bad_cases.parquet  the failing outputs (same schema)
    WORKSPACE/evaluations/<stage>-step-NNNNNNN/summary.json       pass rates and mean metrics per category

Why several seeds per prompt: the RL track ranks the outputs of one prompt by `reward` into preference pairs,
and one seed cannot tell a model failure from an unlucky sample. The reward is a weighted mean of continuous
scores (quality soft score; OCR accuracy and ink layout for text; class probability for objects; edit score;
CLIP image-text similarity when CLIP weights are configured), so seeds rank and ties are the exception.

Speed: all outputs of a chunk (`batch_size` prompt x seed jobs) are generated in one batched sampling run,
OCR runs concurrent tesseract processes, and the defaults (8 Euler steps, 3 seeds) keep the default prompt
set (13 prompts, 39 outputs) to minutes on a 2-core CPU.

An enhancer (flywheel.enhancer) rewrites each prompt before generation; the row keeps the original
`prompt` (what was asked, what the bad case is about) and the rewrite in `enhanced_prompt`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from flywheel.enhancer import PromptEnhancer
from flywheel.evaluation import check_evaluation_table, evaluation_schema
from flywheel.store.shards import write_json_atomic
from trainer.evaluate.metrics import (
    ObjectClassifier,
    Tesseract,
    edit_metrics,
    quality_metrics,
    read_many,
    text_metrics_read,
)
from trainer.evaluate.prompts import EvalPrompt, PromptSet
from trainer.generate import Pipeline

# Weights of the reward's parts; the primary signal of a category counts more than image statistics.
REWARD_WEIGHTS = {
    "quality_score": 1.0,
    "ocr_char_acc": 2.0,
    "ink_score": 0.5,
    "label_prob": 2.0,
    "edit_score": 2.0,
    "clip_match": 1.0,
}


@dataclass(frozen=True)
class EvalSettings:
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 8
    guidance: float = 4.0
    size: tuple[int, int] | None = None  # default: the stage's first resolution, square
    batch_size: int = 16
    enhancer: PromptEnhancer | None = None
    clip: Any = None  # a flywheel.models.embedders.ClipEmbedder, when CLIP weights are configured


@dataclass
class EvalResult:
    out_dir: Path
    rows: int
    failed: int
    summary: dict[str, Any]


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def eval_id(checkpoint: str, prompt_id: str, seed: int) -> str:
    return hashlib.blake2b(f"{checkpoint}\0{prompt_id}\0{seed}".encode(), digest_size=16).hexdigest()


def reward_of(metrics: dict[str, float]) -> float:
    """Weighted mean of the continuous scores present in `metrics` (REWARD_WEIGHTS), in [0, 1]."""
    parts = [(REWARD_WEIGHTS[k], float(np.clip(v, 0.0, 1.0))) for k, v in metrics.items() if k in REWARD_WEIGHTS]
    return float(sum(w * v for w, v in parts) / sum(w for w, _ in parts)) if parts else 0.0


def clip_match(similarity: float) -> float:
    """CLIP cosine similarity of image and prompt mapped to [0, 1] (0.15 unrelated .. 0.35 a clear match)."""
    return float(np.clip((similarity - 0.15) / 0.2, 0.0, 1.0))


def _score(
    p: EvalPrompt,
    image: Image.Image,
    source: Image.Image | None,
    probs: np.ndarray | None,
    read: str | None,
    classifier: ObjectClassifier | None,
    clip_sim: float | None = None,
) -> tuple[dict[str, float], list[str]]:
    metrics, tags = quality_metrics(image, document=p.category == "text")
    if p.category == "text" and p.expected_text and read is not None:
        m, t = text_metrics_read(image, p.expected_text, read)
        metrics.update(m)
        tags += t
    if p.expected_label and classifier is not None and probs is not None:
        m, t = classifier.metrics(probs, p.expected_label)
        metrics.update(m)
        tags += t
    if source is not None:
        m, t = edit_metrics(image, source)
        metrics.update(m)
        tags += t
    if clip_sim is not None:
        metrics["clip_similarity"] = clip_sim
        metrics["clip_match"] = clip_match(clip_sim)
    metrics["reward"] = reward_of(metrics)
    return metrics, tags


def evaluate(
    pipeline: Pipeline, prompts: PromptSet, out_root: Path, settings: EvalSettings, log: Callable[[str], None] = print
) -> EvalResult:
    ocr = Tesseract()
    if any(p.category == "text" for p in prompts.prompts):
        ocr.check()
    need_classifier = any(p.expected_label for p in prompts.prompts)
    classifier = ObjectClassifier(pipeline.parts.device) if need_classifier else None
    size = settings.size or pipeline.default_size
    ckpt = pipeline.checkpoint
    enhanced = _Enhanced(settings.enhancer)
    jobs = [(p, s) for p in prompts.prompts for s in settings.seeds]
    rows: list[dict[str, Any]] = []
    now = dt.datetime.now(dt.UTC)
    for start in range(0, len(jobs), settings.batch_size):
        chunk = jobs[start : start + settings.batch_size]
        for task in ("T2I", "TI2I"):
            part = [(p, s) for p, s in chunk if p.task == task]
            if not part:
                continue
            sources = [p.source.render(size) for p, _ in part if p.source is not None] if task == "TI2I" else None
            asked = [p.prompt for p, _ in part]
            given = enhanced.get_many(asked)
            images = pipeline.generate(
                given,
                [s for _, s in part],
                size=size,
                steps=settings.steps,
                guidance=settings.guidance,
                sources=sources,
            )
            probs = classifier.probabilities(images) if classifier is not None else None
            text_jobs = [i for i, (p, _) in enumerate(part) if p.category == "text" and p.expected_text]
            reads = dict(zip(text_jobs, read_many(ocr, [images[i] for i in text_jobs]), strict=True))
            sims = _clip_similarities(settings.clip, images, asked) if settings.clip is not None else None
            for i, ((p, seed), image) in enumerate(zip(part, images, strict=True)):
                source = sources[i] if sources is not None else None
                metrics, tags = _score(
                    p,
                    image,
                    source,
                    probs[i] if probs is not None else None,
                    reads.get(i),
                    classifier,
                    float(sims[i]) if sims is not None else None,
                )
                reward = metrics.pop("reward")
                rows.append(
                    {
                        "eval_id": eval_id(str(ckpt.path) + enhanced.tag, p.id, seed),
                        "prompt_id": p.id,
                        "prompt": p.prompt,
                        "enhanced_prompt": given[i] if settings.enhancer is not None else None,
                        "task": p.task,
                        "category": p.category,
                        "expected_text": p.expected_text,
                        "expected_label": p.expected_label,
                        "source_image": _png(source) if source else None,
                        "output_image": _png(image),
                        "seed": seed,
                        "metrics": list(metrics.items()),
                        "reward": reward,
                        "failure_tags": sorted(set(tags)),
                        "passed": not tags,
                        "checkpoint": str(ckpt.path),
                        "step": ckpt.step,
                        "created_at": now,
                    }
                )
        log(f"evaluated {min(start + settings.batch_size, len(jobs))}/{len(jobs)} outputs")
    table = check_evaluation_table(pa.Table.from_pylist(rows, schema=evaluation_schema()))
    out_dir = out_root / ckpt.name
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_parquet(table, out_dir / "results.parquet")
    _write_parquet(table.filter(pc.invert(table.column("passed"))), out_dir / "bad_cases.parquet")
    summary = _summary(rows, ckpt.name, prompts.name, settings)
    summary["ties"] = _ties(rows)
    write_json_atomic(out_dir / "summary.json", summary)
    return EvalResult(out_dir=out_dir, rows=len(rows), failed=sum(not r["passed"] for r in rows), summary=summary)


class _Enhanced:
    """Rewrites of each distinct prompt, asked once per evaluation; `tag` keeps enhanced outputs' eval ids apart
    from plain ones (a case re-evaluated with rewriting is a new output, not a re-ingest of the old one)."""

    def __init__(self, enhancer: PromptEnhancer | None) -> None:
        self.enhancer = enhancer
        self.cache: dict[str, str] = {}
        self.tag = f"\0enhancer:{enhancer.name}" if enhancer is not None else ""

    def get_many(self, prompts: list[str]) -> list[str]:
        if self.enhancer is None:
            return prompts
        todo = sorted({p for p in prompts if p not in self.cache})
        if todo:
            self.cache.update(zip(todo, self.enhancer.enhance(todo), strict=True))
        return [self.cache[p] for p in prompts]


def _clip_similarities(clip: Any, images: list[Image.Image], prompts: list[str]) -> np.ndarray:
    vecs, ok = clip.embed_images([_png(im) for im in images])
    texts = clip.embed_texts(prompts)
    sims = (np.asarray(vecs) * np.asarray(texts)).sum(-1)
    return np.where(np.asarray(ok, bool), sims, np.nan)


def _ties(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many prompts have two or more outputs with the same reward (to 1e-6): should be few."""
    by_prompt: dict[str, list[float]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(round(r["reward"], 6))
    tied = sum(1 for v in by_prompt.values() if len(set(v)) < len(v))
    return {"prompts": len(by_prompt), "prompts_with_tied_rewards": tied}


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    pq.write_table(table, tmp, compression="zstd")
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _summary(rows: list[dict[str, Any]], checkpoint: str, prompt_set: str, settings: EvalSettings) -> dict[str, Any]:
    by_cat: dict[str, dict[str, Any]] = {}
    for cat in sorted({r["category"] for r in rows}):
        sel = [r for r in rows if r["category"] == cat]
        names = sorted({k for r in sel for k, _ in r["metrics"]})
        tags: dict[str, int] = {}
        for r in sel:
            for t in r["failure_tags"]:
                tags[t] = tags.get(t, 0) + 1
        by_cat[cat] = {
            "outputs": len(sel),
            "pass_rate": sum(r["passed"] for r in sel) / len(sel),
            "mean_reward": float(np.mean([r["reward"] for r in sel])),
            "failure_tags": tags,
            "mean_metrics": {n: float(np.mean([v for r in sel for k, v in r["metrics"] if k == n])) for n in names},
        }
    return {
        "checkpoint": checkpoint,
        "prompt_set": prompt_set,
        "seeds": list(settings.seeds),
        "steps": settings.steps,
        "guidance": settings.guidance,
        "outputs": len(rows),
        "pass_rate": sum(r["passed"] for r in rows) / max(1, len(rows)),
        "categories": by_cat,
    }
