"""The caption step on Ray Data: curated shards -> captioned shards, resumable, plus the CLI and synth source."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from captioners import columns as C
from captioners.config import CaptionConfig
from captioners.synth.corpus import SCRIPTS
from captioners.synth.render import render_pure
from flywheel.schema import core_schema
from flywheel.workspace import Workspace
from pipelines.steps.caption import caption, captioned_dir


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _curated(ws: Workspace, recipe: str) -> list[str]:
    """Two tiny curated shards: a Latin text render, a blank image, a Korean render, broken bytes."""
    rng = np.random.default_rng(0)
    images = [
        _png(render_pure(SCRIPTS["Latn"], rng, 36, "OPEN DAILY").image),
        _png(Image.new("RGB", (120, 90), (90, 140, 60))),
        _png(render_pure(SCRIPTS["Kore"], rng, 36, "안녕하세요").image),
        b"\x00broken",
    ]
    schema = core_schema()
    store = ws.curated_store(recipe)
    for index, rows in enumerate((images[:2], images[2:])):
        cols = {f.name: pa.nulls(len(rows), f.type) for f in schema}
        cols["uri"] = pa.array([f"mem://{index}/{i}" for i in range(len(rows))])
        cols["image"] = pa.array(rows, pa.binary())
        cols["caption"] = pa.array(["a sign in Lisbon", None][: len(rows)])
        store.write(index, pa.table(cols, schema=schema), fingerprint=f"{recipe}:{index}")
    store.write_manifest()
    return ["OPEN DAILY", "", "안녕하세요", None]  # type: ignore[list-item]


def test_caption_step_writes_resumable_captioned_shards(ray_session: None, tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    truth = _curated(ws, "r1")
    result = caption(ws, "r1", ("general", "text", "structured"), CaptionConfig())
    assert (result.written, result.skipped, result.rows_written) == (2, 0, 4)
    out = captioned_dir(ws, "r1")
    assert out == result.out_dir and out.parent.name == "captioned"
    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    for col in C.CAPTION_COLUMNS:
        assert table.schema.field(col.name).type == col.dtype
    assert "image" in table.column_names and "uri" in table.column_names  # curated columns carried over
    rows = sorted(table.to_pylist(), key=lambda r: r["uri"])
    assert rows[0]["ocr_text"] == truth[0] and rows[0]["ocr_script"] == "Latn"
    assert rows[0]["caption_text_status"] == C.OK and '"OPEN DAILY"' in rows[0]["caption_text"]
    assert json.loads(rows[0]["caption_structured"])["visible_text"][0]["text"] == "OPEN DAILY"
    assert rows[1]["ocr_text"] == "" and rows[1]["caption_text"] == "No visible text."
    assert rows[2]["ocr_script"] == "Kore"
    assert rows[3]["caption_text_status"] == C.ERROR
    assert all(r["caption_general_status"] in (C.NOT_PRODUCED, C.ERROR) for r in rows)
    assert "types.general" in rows[0]["caption_general_error"]
    assert rows[0]["caption_fused"] == "a sign in Lisbon" and rows[0]["caption_split"] == "raw"
    assert all(r["caption_knowledge_status"] == C.NOT_REQUESTED for r in rows)
    assert result.summary["text"]["ok"] == 3 and result.summary["general"]["not_produced"] == 3
    again = caption(ws, "r1", ("general", "text", "structured"), CaptionConfig())
    assert (again.written, again.skipped) == (0, 2)  # finished shards are skipped
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows"] == 4 and manifest["summary"]["text"]["ok"] == 3
    # one row per caption batch: whether Ray hands a shard over whole or in pieces (merged by a task), the
    # workers write the same rows and the driver receives summaries only
    split = Workspace.at(tmp_path / "split")
    _curated(split, "r1")
    pieces = caption(split, "r1", ("general", "text", "structured"), CaptionConfig(batch_size=1))
    assert (pieces.written, pieces.rows_written) == (2, 4) and pieces.merged_pieces <= 2
    merged = pq.read_table(sorted(captioned_dir(split, "r1").glob("part-*.parquet")))
    texts = [sorted(t.column("ocr_text").to_pylist(), key=str) for t in (merged, table)]
    assert texts[0] == texts[1]
    assert 0 < pieces.driver_bytes < sum(len(b or b"") for b in table.column("image").to_pylist())
    assert not list((captioned_dir(split, "r1") / "_pieces").glob("*"))


def test_cli_caption_and_synth(ray_session: None, tmp_path: Path) -> None:
    from flywheel.ingest import open_source
    from pipelines.cli import app

    runner = CliRunner()
    synth_dir = tmp_path / "synth"
    res = runner.invoke(app, ["synth", "--out", str(synth_dir), "--n", "3", "--scripts", "Latn,Hans,Arab"])
    assert res.exit_code == 0, res.output
    sidecars = sorted(synth_dir.glob("*.json"))
    assert len(sidecars) == 3 and len(list(synth_dir.glob("*.png"))) == 3
    source = open_source(str(synth_dir))
    samples = [s for spec in source.plan(10) for s in source.read(spec)]
    assert len(samples) == 3
    meta = json.loads(samples[0].meta_json())
    assert {"kind", "script", "lines", "font", "font_px"} <= set(meta["synth"])
    assert meta["synth"]["lines"][0] in samples[0].caption
    ws = tmp_path / "ws"
    _curated(Workspace.at(ws), "r2")
    res = runner.invoke(app, ["caption", "-w", str(ws), "--recipe", "r2", "--types", "text", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["text"]["ok"] == 3
    res = runner.invoke(app, ["caption", "-w", str(ws), "--recipe", "r2", "--types", "poem"])
    assert res.exit_code == 2 and "unknown caption type" in res.output
    res = runner.invoke(app, ["caption", "-w", str(ws), "--recipe", "missing"])
    assert res.exit_code == 2 and "flywheel select" in res.output
    res = runner.invoke(app, ["caption", "-w", str(ws), "--recipe", "r2", "--backend", "openai"])
    assert res.exit_code == 2 and "openai.base_url" in res.output
    res = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--kinds", "watercolour"])
    assert res.exit_code == 2 and "unknown kind" in res.output


@pytest.mark.parametrize("kind", ["pure", "compositional", "complex"])
def test_synth_kinds_render_exact_lines(kind: str) -> None:
    from captioners.synth.render import render

    sample = render(kind, "Arab" if kind == "complex" else "Hans", np.random.default_rng(3))
    assert sample.kind == kind and sample.lines and all(line for line in sample.lines)
    assert all(f'"{line}"' in sample.caption for line in sample.lines)
    assert min(sample.image.size) >= 48 and sample.font_px > 0
