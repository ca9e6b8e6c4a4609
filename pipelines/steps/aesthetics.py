"""`flywheel aesthetics fit`: retrain the aesthetic head on a workspace's decisions plus constructed pairs.

Why constructed pairs are always mixed in: a workspace has tens to hundreds of keep/reject verdicts, too few
to fit 1280-d features alone; the pairs built from the workspace's own pool images (a sample, each against
its degraded versions) keep the head anchored on technical damage in the workspace's domain, and the verdicts
move it toward what its annotators keep. The verdicts enter twice: as a logistic keep/reject term, and as
Bradley-Terry pairs between a kept and a rejected output of the same prompt.

Writes WORKSPACE/models/aesthetics/head.safetensors and WORKSPACE/models/aesthetics/scoring.yaml, a scoring
config (the `--config` file given, or defaults) whose `aesthetics.head` points at the new head: pass it to
`flywheel score`/`score-missing --config`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from flywheel.aesthetics.decisions import Verdict, workspace_verdicts
from flywheel.aesthetics.degrade import build_pairs
from flywheel.aesthetics.embed import LiteEmbedder
from flywheel.aesthetics.head import save_head
from flywheel.aesthetics.train import FitConfig, fit_head, pairwise_accuracy
from flywheel.errors import MissingInput, UserError
from flywheel.imaging import decode
from flywheel.workspace import Workspace

MODELS_SUBDIR = Path("models") / "aesthetics"  # under the workspace root (see merge notes: Workspace property)
HEAD_FILE = "head.safetensors"
CONFIG_FILE = "scoring.yaml"
SOURCE_VIEW = 512  # decode pool images at this shorter side before building views (views are 256 px)
MIN_SIDE = 64  # smaller images make no meaningful views


@dataclass
class FitResult:
    head: Path
    config: Path
    keep: int = 0
    reject: int = 0
    verdict_pairs: int = 0
    source_images: int = 0
    constructed_pairs: int = 0
    constructed_accuracy: float = float("nan")  # in-sample, on the constructed pairs
    verdict_agreement: float = float("nan")  # in-sample: P(keep) > 0.5 matches the verdict
    why: dict[str, int] = field(default_factory=dict)


def sample_pool_images(ws: Workspace, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Up to `n` decodable pool images, chosen by a seeded hash of their id (stable for one pool and seed)."""
    if n <= 0 or not ws.pool_dir.is_dir():
        return []
    paths = ws.pool.shard_paths()
    keyed: list[tuple[str, int, int, str]] = []
    for si, path in enumerate(paths):
        for ri, sid in enumerate(pq.read_table(path, columns=["id"]).column("id").to_pylist()):
            keyed.append((hashlib.blake2b(f"{seed}:{sid}".encode(), digest_size=8).hexdigest(), si, ri, sid))
    keyed.sort()
    out: list[tuple[str, np.ndarray]] = []
    tables: dict[int, list[bytes | None]] = {}
    for _, si, ri, sid in keyed:
        if len(out) >= n:
            break
        if si not in tables:
            tables[si] = pq.read_table(paths[si], columns=["image"]).column("image").to_pylist()
        decoded = decode(tables[si][ri], view_short_side=SOURCE_VIEW)
        if decoded.rgb is not None and min(decoded.rgb.shape[:2]) >= MIN_SIDE:
            out.append((sid, decoded.rgb))
    return out


def _verdict_images(verdicts: list[Verdict]) -> tuple[list[Verdict], list[np.ndarray]]:
    kept, rgbs = [], []
    for v in verdicts:
        decoded = decode(v.image.read_bytes(), view_short_side=256)
        if decoded.rgb is not None:
            kept.append(v)
            rgbs.append(decoded.rgb)
    return kept, rgbs


def within_prompt_pairs(verdicts: list[Verdict], offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, rejected) index pairs of outputs of the same prompt, indices shifted by `offset`."""
    by_group: dict[str, tuple[list[int], list[int]]] = {}
    for i, v in enumerate(verdicts):
        keep, rej = by_group.setdefault(v.group, ([], []))
        (keep if v.keep else rej).append(i + offset)
    good = [k for keep, rej in by_group.values() for k in keep for _ in rej]
    bad = [r for keep, rej in by_group.values() for _ in keep for r in rej]
    return np.asarray(good, dtype=np.int64), np.asarray(bad, dtype=np.int64)


def fit_workspace(
    workspace: Path,
    *,
    config: Path | None = None,
    pool_images: int = 200,
    views: int = 2,
    fit: FitConfig | None = None,
    log: Callable[[str], None] = print,
) -> FitResult:
    """Fit a head on WORKSPACE's verdicts and constructed pairs from its pool; write it and a config naming it."""
    import yaml

    from flywheel.config import load_yaml

    fit = fit or FitConfig()
    if views < 1:
        raise UserError(f"--views must be >= 1, got {views}")
    ws = Workspace.at(workspace)
    if not ws.root.is_dir():
        raise MissingInput(f"workspace {ws.root} does not exist")
    base = load_yaml(config) if config is not None else {}
    if config is not None and not isinstance(base, dict):
        raise UserError(f"{config}: a scoring config must be a YAML mapping")
    verdicts, verdict_rgbs = _verdict_images(workspace_verdicts(ws.root))
    sources = sample_pool_images(ws, pool_images, fit.seed)
    if not verdicts and not sources:
        raise MissingInput(
            f"nothing to fit in {ws.root}: no keep/reject decisions in badcases/ and no scored pool images "
            "(run `flywheel score`, or decide cases in the dashboard)"
        )
    log(f"{len(verdicts)} verdicts ({sum(v.keep for v in verdicts)} keep), {len(sources)} pool images as sources")
    pairs = build_pairs(sources, views, fit.seed) if sources else None
    constructed = pairs.views if pairs is not None else []
    embedder = LiteEmbedder()
    x = embedder.embed(list(constructed) + verdict_rgbs)
    n_c = len(constructed)
    good = pairs.good if pairs is not None else np.zeros(0, dtype=np.int64)
    bad = pairs.bad if pairs is not None else np.zeros(0, dtype=np.int64)
    vg, vb = within_prompt_pairs(verdicts, n_c)
    labelled = np.arange(n_c, n_c + len(verdicts), dtype=np.int64)
    labels = np.array([1.0 if v.keep else 0.0 for v in verdicts], dtype=np.float32)
    anchor = np.setdiff1d(np.arange(n_c), bad) if n_c else labelled[labels == 1]
    meta = {
        "trained_on": f"workspace {ws.root}: {len(verdicts)} verdicts, {len(sources)} pool images, {len(good)} pairs",
        "command": "flywheel aesthetics fit",
    }
    head = fit_head(
        x,
        np.concatenate([good, vg]),
        np.concatenate([bad, vb]),
        labelled=labelled if len(verdicts) else None,
        labels=labels if len(verdicts) else None,
        anchor=anchor if len(anchor) else None,
        cfg=fit,
        meta=meta,
    )
    out_dir = ws.root / MODELS_SUBDIR
    head_path = save_head(out_dir / HEAD_FILE, head)
    cfg_data = dict(base)
    cfg_data["aesthetics"] = {**(base.get("aesthetics") or {}), "head": str(head_path)}
    for key in ("checkpoint", "predictor"):  # the LAION path would win over the new head: drop it
        cfg_data["aesthetics"].pop(key, None)
    config_path = out_dir / CONFIG_FILE
    config_path.write_text(yaml.safe_dump(cfg_data, sort_keys=True))
    scores = head(x)
    result = FitResult(
        head=head_path,
        config=config_path,
        keep=int(labels.sum()),
        reject=int(len(labels) - labels.sum()),
        verdict_pairs=len(vg),
        source_images=len(sources),
        constructed_pairs=len(good),
        constructed_accuracy=pairwise_accuracy(scores, good, bad),
    )
    if len(verdicts):
        t = float(head.meta["keep_threshold"])
        result.verdict_agreement = float(((scores[labelled] > t) == (labels == 1)).mean())
        for v in verdicts:
            result.why[v.why] = result.why.get(v.why, 0) + 1
    return result
