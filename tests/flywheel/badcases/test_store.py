"""The bad-case store: evaluation/feedback ingest, idempotence, clear per-line errors, concurrent writers."""

import json
import multiprocessing as mp
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.badcases import BadCaseError, BadCaseStore, FeedbackError, ingest_file
from flywheel.badcases.export import export_parquet
from flywheel.evaluation import EvaluationSchemaError, evaluation_schema
from tests.images import encode, photo_like


def _eval_rows(n_prompts: int = 2) -> pa.Table:
    rows = []
    for p in range(n_prompts):
        for seed, (reward, tags) in enumerate([(0.9, []), (0.2, ["low_quality"])]):
            rows.append(
                {
                    "eval_id": f"e{p}-{seed}",
                    "prompt_id": f"p{p}",
                    "prompt": f"prompt {p}",
                    "task": "T2I",
                    "category": "object",
                    "expected_text": None,
                    "expected_label": "cat",
                    "source_image": None,
                    "output_image": encode(photo_like(64, 48, seed=p * 10 + seed), "PNG"),
                    "seed": seed,
                    "metrics": [("label_prob", reward)],
                    "reward": reward,
                    "failure_tags": tags,
                    "passed": not tags,
                    "checkpoint": "ck",
                    "step": 10,
                    "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                }
            )
    return pa.Table.from_pylist(rows, schema=evaluation_schema())


def test_evaluation_ingest_is_idempotent_and_keeps_references(tmp_path):
    path = tmp_path / "eval.parquet"
    pq.write_table(_eval_rows(), path)
    store = BadCaseStore(tmp_path / "bc")
    first = ingest_file(store, path).result
    again = ingest_file(store, path).result
    assert (first.added, first.skipped) == (4, 0) and (again.added, again.skipped) == (0, 4)
    bad, refs = store.list(kind="bad"), store.list(kind="reference")
    assert len(bad) == 2 and len(refs) == 2
    case = store.get(bad[0]["case_id"])
    assert case["failure_tags"] == ["low_quality"] and case["metrics"] == {"label_prob": 0.2}
    assert store.image_file(case["output_image"]).read_bytes().startswith(b"\x89PNG")


def test_evaluation_schema_errors_are_reported(tmp_path):
    path = tmp_path / "eval.parquet"
    pq.write_table(_eval_rows().drop_columns(["reward"]), path)
    with pytest.raises(EvaluationSchemaError, match="reward"):
        ingest_file(BadCaseStore(tmp_path / "bc"), path)


def test_feedback_jsonl_and_csv_with_line_errors(tmp_path):
    (tmp_path / "out.png").write_bytes(encode(photo_like(40, 30), "PNG"))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    good = {"prompt": "a cat", "image": "out.png", "complaint": "blurry", "rating": 2}
    lines = [
        json.dumps(good),
        "{broken json",
        json.dumps({"prompt": "", "rating": 3}),
        json.dumps({"prompt": "x", "rating": 9}),
        json.dumps({"prompt": "x", "image": "junk.png", "rating": 1}),
        json.dumps({"prompt": "x", "colour": "red", "rating": 1}),
    ]
    path = tmp_path / "fb.jsonl"
    path.write_text("\n".join(lines) + "\n")
    store = BadCaseStore(tmp_path / "bc")
    with pytest.raises(FeedbackError) as info:
        ingest_file(store, path)
    msg = str(info.value)
    for needle in (
        "line 2: not valid JSON",
        "line 3: 'prompt' is missing",
        "line 4: 'rating' must be from 1 to 5",
        "line 5",
        "not a usable image",
        "line 6: unknown field(s) ['colour']",
    ):
        assert needle in msg
    assert store.list() == []  # nothing ingested from a file with errors
    report = ingest_file(store, path, skip_invalid=True)
    assert report.result.added == 1 and len(report.invalid) == 5
    assert ingest_file(store, path, skip_invalid=True).result.added == 0
    csv_path = tmp_path / "fb.csv"
    csv_path.write_text("prompt,image,complaint,rating\na dog,out.png,the dog has five legs,1\n")
    assert ingest_file(store, csv_path).result.added == 1
    assert {c["source"] for c in store.list()} == {"feedback"}


def _decide_many(root: str, worker: int, n: int) -> None:
    store = BadCaseStore(root)
    ids = [c["case_id"] for c in store.list()]
    for i in range(n):
        store.decide(ids[i % len(ids)], ("rl", "pretrain", "prompt")[i % 3], f"annotator{worker}", f"{worker}-{i}")


def test_concurrent_annotators_lose_nothing(tmp_path):
    path = tmp_path / "eval.parquet"
    pq.write_table(_eval_rows(3), path)
    store = BadCaseStore(tmp_path / "bc")
    ingest_file(store, path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_decide_many, args=(str(tmp_path / "bc"), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    decisions = store.decisions()
    assert len(decisions) == 160
    assert {d["note"] for d in decisions} == {f"{w}-{i}" for w in range(4) for i in range(40)}
    latest = store.latest_decisions()
    for case in store.list():
        assert case["track"] == latest[case["case_id"]] and case["track_by"].startswith("annotator:")


def test_decide_validates_and_export_roundtrips(tmp_path):
    path = tmp_path / "eval.parquet"
    pq.write_table(_eval_rows(1), path)
    store = BadCaseStore(tmp_path / "bc")
    ingest_file(store, path)
    case_id = store.list()[0]["case_id"]
    with pytest.raises(BadCaseError, match="unknown track"):
        store.decide(case_id, "nowhere", "ann")
    with pytest.raises(BadCaseError, match="no bad case"):
        store.decide("missing", "rl", "ann")
    store.decide(case_id, "prompt", "ann", "misread")
    n = export_parquet(store, tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert n == table.num_rows == 2
    row = next(r for r in table.to_pylist() if r["case_id"] == case_id)
    assert json.loads(row["decisions"])[0]["note"] == "misread" and row["track"] == "prompt"
