"""The routing policy for real: evidence signals, the shipped YAML, strict policy files, the learned router."""

import numpy as np
import pytest

from flywheel.config import ConfigError
from flywheel.routing import FEATURES, LearnedRouter, Policy, fit_router, instruction_signals
from flywheel.routing.evidence import complaint_signals, metric_signals
from flywheel.routing.router import decide_track


def _evidence(curated_top_sim: float, tags: list[str], prompt: str, complaint: str | None = None) -> dict:
    policy = Policy.load()
    ev = {
        "pool_top_sim": curated_top_sim,
        "pool_mean_sim": curated_top_sim - 0.1,
        "pool_count": 3.0,
        "curated_top_sim": curated_top_sim,
        "curated_mean_sim": curated_top_sim - 0.1,
        "curated_count": 2.0,
        **metric_signals({"failure_tags": tags, "reward": 0.3}),
        **instruction_signals(prompt),
        **complaint_signals(complaint, policy.lexicons),
    }
    return ev


def test_instruction_and_complaint_signals():
    s = instruction_signals('three cups to the left of a cat, no saucers, signs "OPEN" and "CLOSED"')
    assert s["n_counts"] == 1 and s["n_spatial"] == 1 and s["n_negation"] == 1 and s["n_quoted"] == 2
    assert s["complexity"] == 4
    assert instruction_signals("a cat")["complexity"] == 0
    lex = Policy.load().lexicons
    assert complaint_signals("It doesn't know what a red panda looks like", lex)["complaint_unknown"] >= 1
    assert complaint_signals("so blurry", lex)["complaint_quality"] == 1


def test_default_policy_routes_constructed_cases_and_records_the_rule():
    policy = Policy.load()
    cases = {
        "pretrain": _evidence(0.2, ["object_missing"], "a giraffe"),
        "rl": _evidence(0.8, ["low_quality"], "a ginger cat"),
        "prompt": _evidence(0.8, ["object_missing"], "two cups left of a cat, no saucers"),
    }
    for want, ev in cases.items():
        track, by, extra = decide_track(ev, policy, "rules", None, 0.7)
        assert track == want, (want, extra)
        assert by == f"rule:{extra['rule']}" and extra["conditions"] is not None
    fired = decide_track(cases["pretrain"], policy, "rules", None, 0.7)[2]
    assert fired["rule"] == "concept_missing_from_curated"
    assert fired["conditions"]["curated_top_sim"] == {"value": 0.2, "min": None, "max": 0.45}
    # without coverage evidence the coverage rule cannot fire
    no_cov = dict(cases["pretrain"], curated_top_sim=None)
    assert decide_track(no_cov, policy, "rules", None, 0.7)[0] == "rl"


def test_policy_files_are_strict(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: x\nrules:\n  - {name: a, track: rl, when: {not_a_feature: {min: 1}}}\n"
        "  - {name: b, track: rl, when: {}}\n"
    )
    with pytest.raises(ConfigError, match="not_a_feature"):
        Policy.load(path)
    path.write_text("name: x\nrules:\n  - {name: a, track: rl, when: {complexity: {min: 1}}}\n")
    with pytest.raises(ConfigError, match="last rule"):
        Policy.load(path)
    path.write_text("name: x\nrules:\n  - {name: a, track: heaven, when: {}}\n")
    with pytest.raises(ConfigError, match="heaven"):
        Policy.load(path)


def test_learned_router_fits_cross_validates_and_roundtrips_json(tmp_path):
    rng = np.random.default_rng(0)
    evidence, labels = [], []
    for i in range(60):
        track = ("pretrain", "rl", "prompt")[i % 3]
        sim = {"pretrain": 0.25, "rl": 0.8, "prompt": 0.75}[track] + rng.normal(0, 0.05)
        tags = ["low_quality"] if track == "rl" else ["object_missing"]
        prompt = "two cups left of a cat, no saucers" if track == "prompt" else "a cat"
        evidence.append(_evidence(sim, tags, prompt))
        labels.append(track)
    router, confusion, order = fit_router(evidence, labels)
    assert router.cv_agreement >= 0.9 and confusion.sum() == 60 and sorted(order) == ["pretrain", "prompt", "rl"]
    path = tmp_path / "router.json"
    router.save(path)
    assert path.read_text().lstrip().startswith("{")  # JSON, no pickle
    loaded = LearnedRouter.load(path)
    assert loaded.features == list(FEATURES)
    assert [t for t, _ in loaded.predict(evidence[:3])] == labels[:3]
    track, by, extra = decide_track(evidence[0], Policy.load(), "blend", loaded, 0.5)
    assert by == "learned" and extra["learned"]["track"] == track
