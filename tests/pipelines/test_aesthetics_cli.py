"""`flywheel aesthetics fit`: a workspace's keep/reject decisions become a head its scoring config names."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from filters.aesthetics import AestheticsScorer
from filters.config import ScoringConfig
from flywheel.aesthetics.decisions import workspace_verdicts
from flywheel.aesthetics.head import load_head
from flywheel.badcases.schema import BadCase
from flywheel.badcases.store import BadCaseStore
from pipelines.cli import app


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _workspace_with_decisions(root: Path) -> Path:
    """Four prompts, each with a sharp output (dismissed or a reference) and a blurred one (routed to a track)."""
    from skimage import data

    store = BadCaseStore(root / "badcases")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    cases = []
    for i, rgb in enumerate(photos):
        rgb = np.ascontiguousarray(rgb[::2, ::2])
        sharp = store.put_image(_png(rgb), "output")
        blurred = store.put_image(_png(np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(4)))), "out")
        kind_ok = "reference" if i == 0 else "bad"
        cases.append(BadCase(f"ok{i}" * 8, kind_ok, "evaluation", f"p{i}", "t", prompt_id=f"p{i}", output_image=sharp))
        cases.append(BadCase(f"no{i}" * 8, "bad", "evaluation", f"p{i}", "t", prompt_id=f"p{i}", output_image=blurred))
    cases.append(BadCase("rated" * 6, "bad", "feedback", "p9", "t", output_image=sharp, rating=5.0))
    cases.append(BadCase("undecided" * 4, "bad", "evaluation", "p8", "t", output_image=blurred))  # no verdict
    store.ingest(cases)
    for case in store.list(kind="bad"):
        if case["content_key"].startswith("ok"):
            store.decide(case["case_id"], "dismiss", "ann")
        elif case["content_key"].startswith("no"):
            store.decide(case["case_id"], "pretrain", "ann")
    return root


def test_workspace_verdicts_read_decisions_ratings_and_references(tmp_path: Path) -> None:
    ws = _workspace_with_decisions(tmp_path / "ws")
    verdicts = workspace_verdicts(ws)
    whys = sorted(v.why for v in verdicts)
    assert whys.count("annotator:dismiss") == 3 and whys.count("annotator:pretrain") == 4
    assert "reference" in whys and "rating:5" in whys
    assert len(verdicts) == 9  # the undecided case is not a verdict
    assert all(v.keep == (v.why in ("annotator:dismiss", "reference", "rating:5")) for v in verdicts)


def test_fit_writes_a_head_the_config_points_to(tmp_path: Path) -> None:
    ws = _workspace_with_decisions(tmp_path / "ws")
    base = tmp_path / "base.yaml"
    base.write_text("clip:\n  batch_size: 8\naesthetics:\n  batch_size: 4\n")
    result = CliRunner().invoke(
        app, ["aesthetics", "fit", "-w", str(ws), "--config", str(base), "--pool-images", "0", "--steps", "150"]
    )
    assert result.exit_code == 0, result.output
    assert "4 reject verdicts" in result.output and "4 same-prompt pairs" in result.output
    cfg_path = ws / "models" / "aesthetics" / "scoring.yaml"
    cfg = ScoringConfig.load(cfg_path)
    assert cfg.clip.batch_size == 8 and cfg.aesthetics.batch_size == 4  # the base config is kept
    assert Path(cfg.aesthetics.head or "") == ws / "models" / "aesthetics" / "head.safetensors"
    head = load_head(cfg.aesthetics.head or "")
    assert "keep_threshold" in head.meta
    scorer = AestheticsScorer.from_config(cfg)
    scorer.load()
    kept = [v for v in workspace_verdicts(ws) if v.why.startswith("annotator:")]
    rgbs = [np.asarray(Image.open(v.image).convert("RGB")) for v in kept]
    scores = np.array(scorer.score_images(rgbs), dtype=np.float64)
    keep = np.array([v.keep for v in kept])
    assert scores[keep].min() > scores[~keep].max()  # the fitted head separates its own verdicts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pool-images", "0"], "nothing to fit"),
        (["--config", "missing.yaml"], "is not a file"),
    ],
)
def test_fit_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "ws").mkdir()
    result = CliRunner().invoke(app, ["aesthetics", "fit", "-w", str(tmp_path / "ws"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
