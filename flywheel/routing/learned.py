"""A learned router: multinomial logistic regression on the evidence features, fit to annotator decisions.

Saved as plain JSON (feature names, scaler mean/scale, coefficients, intercepts, classes): no pickle, so a
router file from anywhere can be loaded safely, read by a person, and diffed. Prediction is numpy only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.errors import MissingInput, UserError
from flywheel.routing.evidence import FEATURES


class RouterTrainingError(UserError):
    pass


def feature_matrix(evidence: Sequence[dict[str, Any]], features: Sequence[str] = FEATURES) -> np.ndarray:
    """Evidence dicts -> [N, F]; an unmeasured feature becomes 0 plus nothing else (its absence is rare and
    the rules, not the model, handle cases without an index)."""
    x = np.zeros((len(evidence), len(features)), dtype=np.float64)
    for i, ev in enumerate(evidence):
        for j, f in enumerate(features):
            v = ev.get(f)
            x[i, j] = 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    return x


@dataclass
class LearnedRouter:
    features: list[str]
    classes: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[list[float]]
    intercept: list[float]
    cv_agreement: float
    cv_folds: int
    trained_on: int

    def probabilities(self, evidence: Sequence[dict[str, Any]]) -> np.ndarray:
        x = (feature_matrix(evidence, self.features) - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = x @ np.asarray(self.coef).T + np.asarray(self.intercept)
        if len(self.classes) == 2 and logits.shape[1] == 1:  # sklearn's binary form
            logits = np.hstack([-logits, logits])
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, evidence: Sequence[dict[str, Any]]) -> list[tuple[str, float]]:
        p = self.probabilities(evidence)
        return [(self.classes[int(i)], float(row[int(i)])) for row, i in zip(p, p.argmax(axis=1), strict=True)]

    def save(self, path: Path) -> None:
        from flywheel.store.shards import write_json_atomic

        write_json_atomic(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> LearnedRouter:
        if not path.is_file():
            raise MissingInput(
                f"no learned router at {path}: run `flywheel route-fit` once annotators have decided enough cases"
            )
        return cls(**json.loads(path.read_text()))


def fit_router(
    evidence: Sequence[dict[str, Any]], labels: Sequence[str], *, min_cases: int = 12, seed: int = 0
) -> tuple[LearnedRouter, np.ndarray, list[str]]:
    """Fit on (evidence, annotator track) pairs; returns the router, the cross-validated confusion matrix
    (rows: annotator, columns: router) and the class order. Agreement is cross-validated, never train-set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(labels) < min_cases:
        raise RouterTrainingError(f"only {len(labels)} decided case(s); the learned router needs >= {min_cases}")
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    if len(classes) < 2:
        raise RouterTrainingError(f"annotators chose only {list(classes)}; the router needs two tracks or more")
    folds = int(min(5, counts.min()))
    if folds < 2:
        raise RouterTrainingError(
            f"each track needs >= 2 decisions for cross-validation; counts: "
            f"{dict(zip(classes.tolist(), counts.tolist(), strict=True))}"
        )
    x, y = feature_matrix(evidence), np.asarray(labels)

    def model() -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced", C=1.0))

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model(), x, y, cv=cv)
    agreement = float((predicted == y).mean())
    full = model().fit(x, y)
    scaler, clf = full.steps[0][1], full.steps[1][1]
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    router = LearnedRouter(
        list(FEATURES),
        [str(c) for c in clf.classes_],
        scaler.mean_.tolist(),
        scale.tolist(),
        clf.coef_.tolist(),
        clf.intercept_.tolist(),
        agreement,
        folds,
        len(y),
    )
    order = [str(c) for c in clf.classes_]
    return router, confusion_matrix(y, predicted, labels=order), order
