"""The evaluation-results schema: the contract between `flywheel evaluate` (trainer) and the bad-case store.

The trainer renders an evaluation prompt set and writes one row per generated output; the flywheel ingests
those rows (`flywheel badcases ingest`) and turns the failing ones into bad cases. Declaring the columns here,
in the core, lets both sides depend on the core instead of on each other. Several outputs of one prompt
(different seeds, same `prompt_id`) are what the RL track ranks into preference pairs.
"""

from __future__ import annotations

import pyarrow as pa

from flywheel.errors import UserError
from flywheel.schema import Column, ColumnRegistry

EVALUATION_VERSION = 1

# Failure tags the trainer's evaluation may emit; the router reads them as evidence.
FAILURE_TAGS = (
    "text_unreadable",  # OCR character accuracy below threshold on a text-rendering prompt
    "text_wrong",  # OCR reads text, but not the expected text
    "object_missing",  # the image classifier does not find the prompted object class
    "low_quality",  # image statistics: flat, blank, saturated, noisy
    "edit_ignored",  # TI2I output too close to the source image
    "edit_destroyed",  # TI2I output unrelated to the source image
)

EVALUATION_COLUMNS: tuple[Column, ...] = (
    Column("eval_id", pa.string(), "hex", "Stable id of this output: hash of checkpoint, prompt_id and seed.", "eval"),
    Column("prompt_id", pa.string(), "", "Evaluation prompt id; shared by the outputs of several seeds.", "eval"),
    Column(
        "prompt", pa.string(), "", "Prompt (T2I) or edit instruction (TI2I) as asked (before any rewriting).", "eval"
    ),
    Column(
        "enhanced_prompt",
        pa.string(),
        "",
        "The prompt enhancer's rewrite the model was given instead; null when no enhancer was used.",
        "eval",
    ),
    Column("task", pa.string(), "", "T2I or TI2I.", "eval"),
    Column("category", pa.string(), "", "Prompt category: text, object, scene, edit, ...", "eval"),
    Column("expected_text", pa.string(), "", "Text the image should show (text prompts); null otherwise.", "eval"),
    Column("expected_label", pa.string(), "", "Object class the image should show (object prompts).", "eval"),
    Column("source_image", pa.binary(), "png", "TI2I: the source image of the edit; null for T2I.", "eval"),
    Column("output_image", pa.binary(), "png", "The generated image, PNG-encoded.", "eval"),
    Column("seed", pa.int64(), "", "Sampling seed.", "eval"),
    Column(
        "metrics",
        pa.map_(pa.string(), pa.float64()),
        "",
        "Named metrics of the output (ocr_char_acc, label_prob, ...); higher is better unless named *_error.",
        "eval",
    ),
    Column(
        "reward", pa.float64(), "", "One scalar in [0, 1] combining the metrics; ranks outputs of one prompt.", "eval"
    ),
    Column("failure_tags", pa.list_(pa.string()), "", "Subset of FAILURE_TAGS; empty when the output passed.", "eval"),
    Column("passed", pa.bool_(), "", "True when no failure tag fired.", "eval"),
    Column("checkpoint", pa.string(), "", "Checkpoint path or name that produced the output.", "eval"),
    Column("step", pa.int64(), "", "Training step of the checkpoint.", "eval"),
    Column("created_at", pa.timestamp("us", tz="UTC"), "", "When the output was scored.", "eval"),
)


def evaluation_schema() -> pa.Schema:
    """Arrow schema of an evaluation-results Parquet file."""
    return (
        ColumnRegistry(EVALUATION_COLUMNS)
        .schema()
        .with_metadata({b"flywheel.evaluation_version": str(EVALUATION_VERSION).encode()})
    )


class EvaluationSchemaError(UserError):
    pass


# Columns added after version 1: files written before them lack them and read as null.
OPTIONAL_COLUMNS = ("enhanced_prompt",)


def check_evaluation_table(table: pa.Table) -> pa.Table:
    """Return `table` cast to the evaluation schema, or say which columns are missing or mistyped."""
    schema = evaluation_schema()
    for name in OPTIONAL_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise EvaluationSchemaError(f"evaluation results lack columns {missing}; see flywheel/evaluation.py")
    unknown_tags = {t for tags in table.column("failure_tags").to_pylist() for t in (tags or [])} - set(FAILURE_TAGS)
    if unknown_tags:
        raise EvaluationSchemaError(f"unknown failure tags {sorted(unknown_tags)}; known: {list(FAILURE_TAGS)}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise EvaluationSchemaError(f"evaluation results do not match the schema: {exc}") from exc
