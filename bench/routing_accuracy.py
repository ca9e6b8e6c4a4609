"""Routing accuracy on a labeled set of bad cases built by construction, with the confusion matrix.

    python3 bench/routing_accuracy.py            # ~1 min on 2 cores (MiniLM embeddings of ~400 texts)

A synthetic pool of captions covers COVERED concepts (several phrasings each) and is indexed with the real
MiniLM embedder in a real LanceDB table. Cases, by construction:
  pretrain - a simple prompt about an ABSENT concept (not in the pool), output tagged object_missing;
  rl       - a simple prompt about a covered concept, output tagged low_quality (degraded render);
  prompt   - a complex instruction (counts, spatial relations, negation, several quoted texts) over covered
             concepts, rendered cleanly (no low_quality) but tagged object_missing (parts missing).
Half of the cases carry a user complaint drawn from a per-track phrase list, half none. A second, harder set
is feedback-style: no failure tags, no expected label (the whole prompt is looked up), absent concepts mixed
with covered words. The shipped policy routes both; the learned router's 5-fold cross-validated agreement on
the same labels is reported too.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel.models.embedders import MiniLMTextEmbedder
from flywheel.retrieval.engine import RetrievalEngine, vectors_to_arrow
from flywheel.routing import IndexCoverage, Policy, fit_router, gather_evidence
from flywheel.routing.router import decide_track

COVERED = [
    "tabby cat",
    "golden retriever",
    "red sports car",
    "wooden chair",
    "coffee cup",
    "bicycle",
    "sailboat",
    "lighthouse",
    "pizza",
    "violin",
    "umbrella",
    "mountain lake",
    "city skyline",
    "sunflower",
    "teapot",
    "horse",
    "laptop",
    "bookshelf",
    "fire truck",
    "strawberry cake",
]
ABSENT = [
    "axolotl",
    "theremin",
    "okapi",
    "astrolabe",
    "narwhal",
    "pangolin",
    "sextant",
    "quokka",
    "armadillo",
    "didgeridoo",
    "platypus",
    "tapir",
    "abacus",
    "gramophone",
    "blobfish",
    "samovar",
    "kiwi bird",
    "yurt",
    "sundial",
    "harp seal",
]
TEMPLATES = [
    "a photo of a {c}",
    "a close-up of a {c} in natural light",
    "a {c} on a plain background",
    "an old photograph of a {c}",
    "a {c} seen from the side",
]
COMPLAINTS = {
    "pretrain": ["it doesn't know what a {c} looks like", "that looks nothing like a {c}"],
    "rl": ["the image is blurry and distorted", "ugly artifacts everywhere"],
    "prompt": ["it ignored half of what I asked for", "wrong number of things, I asked for three"],
}


def cases(rng: random.Random) -> list[tuple[dict, str]]:
    out = []
    for c in ABSENT:
        out.append(
            ({"prompt": f"a {c}", "expected_label": c, "failure_tags": ["object_missing"], "reward": 0.1}, "pretrain")
        )
    for c in COVERED:
        out.append(({"prompt": f"a {c}", "expected_label": c, "failure_tags": ["low_quality"], "reward": 0.2}, "rl"))
    for c in COVERED:
        other = rng.choice([x for x in COVERED if x != c])
        prompt = rng.choice(
            [
                f"three {c}s to the left of a {other}, no people",
                f'a {c} next to a {other} with signs reading "OPEN" and "SALE"',
                f"two {c}s behind a {other}, without any background",
            ]
        )
        out.append(
            ({"prompt": prompt, "expected_label": c, "failure_tags": ["object_missing"], "reward": 0.5}, "prompt")
        )
    for i, (case, label) in enumerate(out):
        case["case_id"] = f"c{i}"
        if i % 2 == 0:
            case["complaint"] = rng.choice(COMPLAINTS[label]).format(c=case["expected_label"])
    return out


def feedback_cases(rng: random.Random) -> list[tuple[dict, str]]:
    """Harder, user-feedback style: no failure tags, no expected label (the whole prompt is the concept),
    absent concepts mixed with covered words, and only every other case has a complaint."""
    out = []
    for i, c in enumerate(ABSENT):
        other = rng.choice(COVERED)
        out.append(({"prompt": f"a {c} next to a {other}" if i % 2 else f"a {c}", "rating": 1}, "pretrain"))
    for c in COVERED:
        out.append(({"prompt": rng.choice([f"a {c}", f"a photo of a {c} at sunset"]), "rating": 2}, "rl"))
    for c in COVERED:
        other = rng.choice([x for x in COVERED if x != c])
        out.append(({"prompt": f"three {c}s to the left of a {other}, no people", "rating": 2}, "prompt"))
    for i, (case, label) in enumerate(out):
        case["case_id"] = f"f{i}"
        case["failure_tags"] = []
        if i % 2 == 0:
            name = case["prompt"].split(" next to")[0].removeprefix("a ")
            case["complaint"] = rng.choice(COMPLAINTS[label]).format(c=name)
    return out


def route_all(labeled: list[tuple[dict, str]], probe: IndexCoverage, policy: Policy) -> dict:
    evidence = gather_evidence([c for c, _ in labeled], probe, policy.lexicons)
    order = ["pretrain", "rl", "prompt"]
    confusion = np.zeros((3, 3), dtype=int)
    rules: dict[str, int] = {}
    for (_, label), ev in zip(labeled, evidence, strict=True):
        track, _, extra = decide_track(ev, policy, "rules", None, 0.7)
        confusion[order.index(label), order.index(track)] += 1
        rules[extra["rule"]] = rules.get(extra["rule"], 0) + 1
    router, cv_conf, cv_order = fit_router(evidence, [label for _, label in labeled])
    return {
        "cases": len(labeled),
        "policy_accuracy": round(float(np.trace(confusion) / confusion.sum()), 4),
        "confusion_rows_truth_cols_routed": {"order": order, "matrix": confusion.tolist()},
        "rules_fired": rules,
        "learned_cv_agreement": round(router.cv_agreement, 4),
        "learned_cv_folds": router.cv_folds,
        "learned_confusion": {"order": cv_order, "matrix": cv_conf.tolist()},
    }


def main() -> None:
    t0 = time.perf_counter()
    rng = random.Random(0)
    text = MiniLMTextEmbedder()
    captions = [t.format(c=c) for c in COVERED for t in TEMPLATES]
    vecs = text.embed_texts(captions)
    engine = RetrievalEngine(Path(tempfile.mkdtemp(prefix="fw-route-")))
    engine.add(
        "caption",
        text.space,
        pa.table(
            {
                "id": [f"p{i}" for i in range(len(captions))],
                "vector": vectors_to_arrow(vecs),
                "caption": captions,
                "curated": [True] * len(captions),
            }
        ),
    )
    policy = Policy.load()
    probe = IndexCoverage(engine, text, policy.coverage.k, policy.coverage.near_similarity)
    result = {
        "evaluation_style": route_all(cases(rng), probe, policy),
        "feedback_style": route_all(feedback_cases(rng), probe, policy),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
