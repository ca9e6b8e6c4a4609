"""Turning the three signal sources into bad cases: evaluation Parquet, user feedback, mined cases.

- Evaluation results (the trainer's Parquet, schema flywheel/evaluation.py): failing rows become bad cases,
  passing rows are kept as references (the RL track pairs them with failures of the same prompt).
- User feedback, JSONL or CSV: `prompt` (required), `image` (path to the output the user saw, relative to the
  file's folder and resolving inside it), `complaint` (free text) and/or `rating` (1..5).
- Mined cases, JSONL: `prompt`, `image`, optional `failure_tags`, `metrics`, `complaint` (a mining note).
Every record gets a content key, so re-ingesting the same file adds nothing twice. Bad lines are reported
all at once with their line numbers; nothing is ingested from a file with errors unless asked to skip them.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flywheel.badcases.images import BadImageError
from flywheel.badcases.schema import BadCase
from flywheel.badcases.store import BadCaseStore, IngestResult
from flywheel.errors import MissingInput, UserError
from flywheel.evaluation import check_evaluation_table

FEEDBACK_KEYS = {"prompt", "image", "complaint", "rating", "task"}
MINED_KEYS = {"prompt", "image", "complaint", "failure_tags", "metrics", "task", "checkpoint"}
MAX_RECORD_BYTES = 1 << 20


class FeedbackError(UserError):
    """One or more records are invalid; `errors` holds one message per bad line."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        self.errors = errors
        shown = "\n  ".join(errors[:20]) + (f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else "")
        super().__init__(f"{path}: {len(errors)} invalid record(s):\n  {shown}")


@dataclass(frozen=True)
class IngestReport:
    result: IngestResult
    invalid: list[str]


def _key(*parts: object) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = json.dumps(part, sort_keys=True, default=str).encode()
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def ingest_evaluation(store: BadCaseStore, path: Path) -> IngestReport:
    """Failing evaluation rows -> bad cases; passing rows -> references. Idempotent by eval_id."""
    table = check_evaluation_table(pq.read_table(path))
    cases = []
    for i, row in enumerate(table.to_pylist()):
        origin = f"{path.name}#row={i}"
        out = store.put_image(row["output_image"], f"{origin} output_image") if row["output_image"] else None
        src = store.put_image(row["source_image"], f"{origin} source_image") if row["source_image"] else None
        metrics = (
            {k: float(v) for k, v in (row["metrics"] or [])}
            if isinstance(row["metrics"], list)
            else dict(row["metrics"] or {})
        )
        cases.append(
            BadCase(
                content_key=_key("evaluation", row["eval_id"]),
                kind="reference" if row["passed"] else "bad",
                source="evaluation",
                prompt=row["prompt"] or "",
                origin=origin,
                prompt_id=row["prompt_id"],
                task=row["task"],
                category=row["category"],
                expected_text=row["expected_text"],
                expected_label=row["expected_label"],
                input_image=src,
                output_image=out,
                seed=row["seed"],
                metrics=metrics,
                reward=row["reward"],
                failure_tags=list(row["failure_tags"] or []),
                checkpoint=row["checkpoint"],
                step=row["step"],
                created_at=row["created_at"].isoformat() if row["created_at"] else None,
            )
        )
    return IngestReport(store.ingest(cases), [])


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record) for JSONL or CSV; a record that cannot be parsed comes back as an error string."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            for line_no, rec in enumerate(csv.DictReader(fh), start=2):
                yield (
                    line_no,
                    {
                        k.strip(): (v.strip() if isinstance(v, str) else v)
                        for k, v in rec.items()
                        if k is not None and v not in (None, "")
                    },
                )
        return
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if len(line) > MAX_RECORD_BYTES:
                yield line_no, f"line {line_no}: record longer than {MAX_RECORD_BYTES} bytes"
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, f"line {line_no}: not valid JSON ({exc.msg})"
                continue
            yield line_no, rec if isinstance(rec, dict) else f"line {line_no}: not a JSON object"


def contained_image(folder: Path, image: object) -> Path:
    """The regular file `image` names inside `folder`, or ValueError with the reason.

    A feedback file comes from outside (users, annotation tools), so its `image` field is untrusted: an
    absolute path, `..` or a symlink out of the folder would copy any readable file of this machine into
    the bad-case store. Only files that resolve inside the feedback file's own folder are accepted.
    """
    if not isinstance(image, str):
        raise ValueError(f"'image' must be a path (text), got {type(image).__name__}")
    if Path(image).is_absolute():
        raise ValueError(f"image {image!r} is an absolute path; give a path relative to {folder}")
    root = folder.resolve()
    resolved = (root / image).resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"image {image!r} resolves outside the feedback folder {root}")
    if not resolved.is_file():
        raise ValueError(f"image {image!r} not found or not a regular file (paths are relative to {root})")
    return resolved


def _case(store: BadCaseStore, path: Path, line_no: int, rec: dict[str, Any], source: str) -> BadCase:
    allowed = FEEDBACK_KEYS if source == "feedback" else MINED_KEYS
    unknown = set(rec) - allowed
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    prompt = rec.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("'prompt' is missing or empty")
    complaint = rec.get("complaint")
    if complaint is not None and not isinstance(complaint, str):
        raise ValueError("'complaint' must be text")
    rating = rec.get("rating")
    if rating is not None:
        try:
            rating = float(rating)
        except (TypeError, ValueError):
            raise ValueError(f"'rating' must be a number from 1 to 5, got {rating!r}") from None
        if not 1 <= rating <= 5:
            raise ValueError(f"'rating' must be from 1 to 5, got {rating}")
    if source == "feedback" and complaint is None and rating is None:
        raise ValueError("give a 'complaint' or a 'rating' (or both)")
    tags = rec.get("failure_tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("'failure_tags' must be a list of strings")
    metrics = rec.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(isinstance(v, int | float) for v in metrics.values()):
        raise ValueError("'metrics' must be an object of numbers")
    image = None
    if rec.get("image"):
        image_file = contained_image(path.parent, rec["image"])
        image = store.put_image(image_file.read_bytes(), f"line {line_no} image")
    task = rec.get("task", "T2I")
    if task not in ("T2I", "TI2I"):
        raise ValueError(f"'task' must be T2I or TI2I, got {task!r}")
    return BadCase(
        content_key=_key(source, prompt, image, complaint, rating, sorted(tags), metrics),
        kind="bad",
        source=source,
        prompt=prompt.strip(),
        origin=f"{path.name}:{line_no}",
        task=task,
        output_image=image,
        complaint=complaint,
        rating=rating,
        failure_tags=list(tags),
        metrics={k: float(v) for k, v in metrics.items()},
        checkpoint=rec.get("checkpoint"),
    )


def ingest_records(store: BadCaseStore, path: Path, source: str, *, skip_invalid: bool = False) -> IngestReport:
    """User feedback (source 'feedback') or mined cases ('mining') from JSONL/CSV."""
    if source not in ("feedback", "mining"):
        raise UserError(f"source must be feedback or mining, got {source!r}")
    if path.suffix.lower() not in (".jsonl", ".json", ".csv"):
        raise UserError(f"{path}: expected a .jsonl or .csv file")
    cases, errors = [], []
    for line_no, rec in _records(path):
        if isinstance(rec, str):
            errors.append(rec)
            continue
        try:
            cases.append(_case(store, path, line_no, rec, source))
        except (ValueError, BadImageError) as exc:
            errors.append(f"line {line_no}: {exc}")
    if errors and not skip_invalid:
        raise FeedbackError(path, errors)
    return IngestReport(store.ingest(cases), errors)


def ingest_file(
    store: BadCaseStore, path: Path, source: str | None = None, *, skip_invalid: bool = False
) -> IngestReport:
    """Dispatch by `source` or, when None, by extension: .parquet -> evaluation, .jsonl/.csv -> feedback."""
    if not path.is_file():
        raise MissingInput(f"no such file: {path}")
    source = source or ("evaluation" if path.suffix.lower() == ".parquet" else "feedback")
    if source == "evaluation":
        return ingest_evaluation(store, path)
    return ingest_records(store, path, source, skip_invalid=skip_invalid)
