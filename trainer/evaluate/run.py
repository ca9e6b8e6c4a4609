"""`flywheel evaluate`: render the prompt set from a checkpoint with several seeds, score, write Parquet.

    WORKSPACE/evaluations/<stage>-step-NNNNNNN/results.parquet    every output (flywheel/evaluation.py schema)
    WORKSPACE/evaluations/<stage>-step-NNNNNNN/bad_cases.parquet  the failing outputs (same schema)
    WORKSPACE/evaluations/<stage>-step-NNNNNNN/summary.json       pass rates and mean metrics per category

Why several seeds per prompt: the RL track ranks the outputs of one prompt by `reward` into preference pairs,
and one seed cannot tell a model failure from an unlucky sample.
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

from flywheel.evaluation import check_evaluation_table, evaluation_schema
from flywheel.store.shards import write_json_atomic
from trainer.evaluate.metrics import (
    ObjectClassifier,
    Tesseract,
    edit_metrics,
    quality_metrics,
    text_metrics,
)
from trainer.evaluate.prompts import EvalPrompt, PromptSet
from trainer.generate import Pipeline


@dataclass(frozen=True)
class EvalSettings:
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 20
    guidance: float = 4.0
    size: tuple[int, int] | None = None  # default: the stage's first resolution, square
    batch_size: int = 8


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


def _score(
    p: EvalPrompt,
    image: Image.Image,
    source: Image.Image | None,
    probs: np.ndarray | None,
    ocr: Tesseract,
    classifier: ObjectClassifier | None,
) -> tuple[dict[str, float], list[str]]:
    metrics, tags = quality_metrics(image, document=p.category == "text")
    primary = None
    if p.category == "text" and p.expected_text:
        m, t, _ = text_metrics(ocr, image, p.expected_text)
        metrics.update(m)
        tags += t
        primary = m["ocr_char_acc"]
    if p.expected_label and classifier is not None and probs is not None:
        m, t = classifier.metrics(probs, p.expected_label)
        metrics.update(m)
        tags += t
        primary = m["label_prob"]
    if source is not None:
        m, t = edit_metrics(image, source)
        metrics.update(m)
        tags += t
        primary = m["edit_score"]
    parts = [metrics["quality_score"]] + ([primary] if primary is not None else [])
    metrics["reward"] = float(np.clip(np.mean(parts), 0.0, 1.0))
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
            images = pipeline.generate(
                [p.prompt for p, _ in part],
                [s for _, s in part],
                size=size,
                steps=settings.steps,
                guidance=settings.guidance,
                sources=sources,
            )
            probs = classifier.probabilities(images) if classifier is not None else None
            for i, ((p, seed), image) in enumerate(zip(part, images, strict=True)):
                source = sources[i] if sources is not None else None
                metrics, tags = _score(p, image, source, probs[i] if probs is not None else None, ocr, classifier)
                reward = metrics.pop("reward")
                rows.append(
                    {
                        "eval_id": eval_id(str(ckpt.path), p.id, seed),
                        "prompt_id": p.id,
                        "prompt": p.prompt,
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
    write_json_atomic(out_dir / "summary.json", summary)
    return EvalResult(out_dir=out_dir, rows=len(rows), failed=sum(not r["passed"] for r in rows), summary=summary)


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
