"""`flywheel train`, `generate` and `evaluate` end to end on a tiny stage YAML, and their input errors."""

from __future__ import annotations

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from tests.trainer.fixtures import draw_shape, fixture_rows, write_curated
from tests.trainer.tiny import tiny_stage

runner = CliRunner()


def _stage_yaml(tmp_path):
    cfg = tiny_stage("cli_tiny", train={"steps": 4, "checkpoint_every": 2}).to_dict()
    path = tmp_path / "cli_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_generate_evaluate(tmp_path):
    ws = tmp_path / "ws"
    write_curated(ws, rows=fixture_rows(4, 2, sizes=((32, 32),)))
    stage = _stage_yaml(tmp_path)
    res = runner.invoke(app, ["train", "-w", str(ws), "--stage", str(stage), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "trained 4 steps" in res.output
    assert (ws / "checkpoints" / "cli_tiny" / "step-0000004" / "model.safetensors").is_file()
    res = runner.invoke(app, ["train", "-w", str(ws), "--stage", str(stage), "--steps", "6", "--threads", "1"])
    assert res.exit_code == 0 and "to step 6" in res.output, res.output  # resumed from step 4

    src = tmp_path / "src.png"
    draw_shape("circle", "red", (32, 32)).save(src)
    res = runner.invoke(
        app,
        [
            "generate",
            "-w",
            str(ws),
            "-c",
            "cli_tiny",
            "-p",
            "make it blue",
            "--source",
            str(src),
            "--seeds",
            "0,1",
            "--steps",
            "2",
            "-o",
            str(tmp_path / "g.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "g-seed0.png").is_file() and (tmp_path / "g-seed1.png").is_file()

    prompts = tmp_path / "p.yaml"
    prompts.write_text("prompts:\n  - {id: s, category: scene, prompt: a beach}\n")
    res = runner.invoke(
        app, ["evaluate", "-w", str(ws), "-c", "cli_tiny", "--prompts", str(prompts), "--seeds", "0,1", "--steps", "2"]
    )
    assert res.exit_code == 0, res.output
    assert pq.read_table(ws / "evaluations" / "cli_tiny-step-0000006" / "results.parquet").num_rows == 2
    assert "prompt(s) with tied rewards" in res.output
    # the prompt enhancer: offline (the workspace has no prompt track yet, so the intent-preserving rules)
    res = runner.invoke(
        app,
        [
            "evaluate",
            "-w",
            str(ws),
            "-c",
            "cli_tiny",
            "--prompts",
            str(prompts),
            "--seeds",
            "0",
            "--steps",
            "1",
            "--enhancer",
            "offline",
        ],
    )
    assert res.exit_code == 0, res.output
    table = pq.read_table(ws / "evaluations" / "cli_tiny-step-0000006" / "results.parquet")
    assert table.column("prompt").to_pylist() == ["a beach"]
    assert table.column("enhanced_prompt").to_pylist()[0].startswith("A photo of a beach")
    res = runner.invoke(
        app,
        [
            "generate",
            "-w",
            str(ws),
            "-c",
            "cli_tiny",
            "-p",
            "can you make a beach pls",
            "--steps",
            "1",
            "--enhancer",
            "offline",
            "-o",
            str(tmp_path / "e.png"),
        ],
    )
    assert res.exit_code == 0 and "enhanced prompt: A photo of a beach" in res.output, res.output
    res = runner.invoke(app, ["generate", "-w", str(ws), "-c", "cli_tiny", "-p", "x", "--enhancer", "magic"])
    assert res.exit_code == 2 and "--enhancer must be" in res.output


def test_bad_input_exits_2_with_a_message(tmp_path):
    res = runner.invoke(app, ["train", "-w", str(tmp_path), "--stage", "no_such_stage"])
    assert res.exit_code == 2 and "unknown stage" in res.output
    res = runner.invoke(app, ["train", "-w", str(tmp_path), "--stage", str(_stage_yaml(tmp_path))])
    assert res.exit_code == 2 and "flywheel select" in res.output
    res = runner.invoke(app, ["generate", "-w", str(tmp_path), "-p", "x", "-c", "nothing"])
    assert res.exit_code == 2 and "no checkpoint" in res.output
