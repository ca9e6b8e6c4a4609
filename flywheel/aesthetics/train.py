"""Fitting the aesthetic head: Bradley-Terry on preference pairs plus a logistic keep/reject term.

Why both: constructed pairs (clean > degraded) are plentiful but only say "less damaged is better";
annotators' keep/reject decisions are scarce but are the real target. One utility s(x) serves both:
P(a preferred over b) = sigmoid(s(a) - s(b)) (Bradley-Terry) and P(keep x) = sigmoid(s(x) - t) with a learned
threshold t. Full-batch Adam from a fixed seed on one thread: the same data gives the same head file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flywheel.aesthetics.head import Head
from flywheel.errors import UserError


@dataclass(frozen=True)
class FitConfig:
    hidden: int = 64  # 0: a linear head
    steps: int = 600
    lr: float = 3e-3
    weight_decay: float = 1e-3
    label_weight: float = 1.0  # weight of the keep/reject term relative to the pair term
    seed: int = 0


def fit_head(
    x: np.ndarray,
    good: np.ndarray,
    bad: np.ndarray,
    *,
    labelled: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    anchor: np.ndarray | None = None,
    cfg: FitConfig = FitConfig(),
    meta: dict[str, str] | None = None,
) -> Head:
    """Fit on embeddings `x`; pairs say x[good[i]] beats x[bad[i]]; `labels` (1 keep, 0 reject) for rows
    `labelled`. The bias is then shifted so that the rows `anchor` (the clean views) average 0."""
    import torch

    if len(good) != len(bad):
        raise UserError("good and bad pair indices differ in length")
    n_labels = 0 if labelled is None else len(labelled)
    if len(good) == 0 and n_labels == 0:
        raise UserError("nothing to fit: no preference pairs and no keep/reject decisions")
    if n_labels and (labels is None or len(labels) != n_labels):
        raise UserError("labels must align with labelled rows")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible reductions
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            dim = x.shape[1]
            layers: list[torch.nn.Module] = []
            if cfg.hidden > 0:
                layers += [torch.nn.Linear(dim, cfg.hidden), torch.nn.ReLU(), torch.nn.Linear(cfg.hidden, 1)]
            else:
                layers += [torch.nn.Linear(dim, 1)]
            net = torch.nn.Sequential(*layers)
            threshold = torch.nn.Parameter(torch.zeros(()))
            opt = torch.optim.AdamW([*net.parameters(), threshold], lr=cfg.lr, weight_decay=cfg.weight_decay)
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            g, b = torch.from_numpy(good), torch.from_numpy(bad)
            li = torch.from_numpy(labelled) if n_labels else None
            ly = torch.from_numpy(np.asarray(labels, dtype=np.float32)) if n_labels else None
            for _ in range(cfg.steps):
                opt.zero_grad()
                s = net(xt)[:, 0]
                loss = torch.zeros(())
                if len(good):
                    loss = loss + torch.nn.functional.softplus(-(s[g] - s[b])).mean()
                if li is not None and ly is not None:
                    bce = torch.nn.functional.binary_cross_entropy_with_logits(s[li] - threshold, ly)
                    loss = loss + cfg.label_weight * bce
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    weights = [m.weight.detach().numpy().astype(np.float32).copy() for m in linears]
    biases = [m.bias.detach().numpy().astype(np.float32).copy() for m in linears]
    head = Head(weights, biases, dict(meta or {}))
    shift = float(head(x[anchor]).mean()) if anchor is not None and len(anchor) else 0.0
    biases[-1] -= shift
    if n_labels:  # P(keep) = sigmoid(score - keep_threshold), on the shifted scale
        head.meta["keep_threshold"] = f"{float(threshold.detach()) - shift:.6f}"
    head.meta.update({"hidden": str(cfg.hidden), "steps": str(cfg.steps), "seed": str(cfg.seed)})
    return head


def pairwise_accuracy(scores: np.ndarray, good: np.ndarray, bad: np.ndarray) -> float:
    """Share of pairs the scores order correctly (ties count half)."""
    if len(good) == 0:
        return float("nan")
    d = scores[good] - scores[bad]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / len(d))
