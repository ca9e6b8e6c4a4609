"""The measured-turn bench: its independent detector reads clean renders correctly, and its fast version runs
the whole turn through the product's steps (select with `mix:`, the router over the index, expansion over a
registered reservoir, retrain with the mix, DPO) and writes its report."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bench import wheel_turn, wheel_world


def test_detector_reads_every_clean_render():
    rng = np.random.default_rng(0)
    for shape in wheel_world.SHAPES:
        for color in wheel_world.COLORS:
            for _ in range(4):
                det = wheel_world.detect(wheel_world.render(shape, color, 32, rng))
                assert (det["shape"], det["color"]) == (shape, color)
                assert wheel_world.reward(det, shape, color) > 0.6
    blank = Image.new("RGB", (32, 32), wheel_world.BACKGROUND)
    assert wheel_world.detect(blank)["shape"] is None


def test_fast_turn_writes_a_report_with_the_mix_it_drew(tmp_path):
    out = tmp_path / "wt.json"
    report = wheel_turn.main(["--fast", "--work", str(tmp_path / "ws"), "--out", str(out)])
    assert json.loads(out.read_text())["concepts"] == report["concepts"]
    assert report["detector_accuracy_on_clean_renders"] == 1.0
    held = report["concepts"]["color:yellow"]
    assert held["held_out"] and len(held["per_seed_before"]) == 2
    for run in report["runs"]:
        # the untrained-enough model fails the held-out concept, which routes to pretrain and finds reservoir rows
        assert run["cases"]["pretrain"] >= 1 and run["expansion_rows"] > 0
        # the router saw the cases of the held-out colour as a missing concept (accuracy against the track the
        # construction implies is reported, not assumed), and expansion found them in the reservoir only
        assert run["routing"]["cases"] == sum(run["cases"].values()) and run["routing"]["accuracy"] is not None
        assert run["routing"]["confusion"].get("pretrain->pretrain", 0) >= 1
        assert set(run["expansion"]["by_provenance"]) == {"reservoir:shapes"}
        (mix,) = run["selection"]["mix"]["sources"]
        assert mix["from"] == "tracks/pretrain" and mix["kept"] == run["expansion_rows"]
        # colloquial requests that failed, with the user's complaint, go to the prompt track; its pairs build the
        # offline enhancer that rewrites those requests for the re-evaluation
        pt = run["prompt_track"]
        assert pt["routed_to_prompt"] >= 1 and pt["pairs"] >= 1
        for asked, rewrite in pt["examples"].items():
            assert rewrite != asked and all(word in rewrite for word in asked.split())
        assert set(run["retrain"]["weights"]) == {"curated", "tracks/pretrain"}
        assert sum(run["retrain"]["drawn"].values()) == 8 * 4  # 4 retrain steps x batch 8
        assert set(run["retrain"]["provenance"]) <= {"curated", "reservoir:shapes"}
    assert set(report["prompt_track"]) == {"reward", "acc"} and report["routing_accuracy"] is not None
