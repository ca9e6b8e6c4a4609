"""The wheel-turn bench's world constants and its steps, each one product call on a workspace.

`bench/wheel_turn.py` strings these into one measured turn (select, train, evaluate, route, expand, retrain, DPO);
they live apart so the turn reads as its sequence and each step can be read (and reused) on its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.wheel_world import COLORS, SHAPES, _png, caption, detect, render, reward  # noqa: E402
from flywheel.ids import sample_id  # noqa: E402
from flywheel.store.shards import ShardStore  # noqa: E402
from flywheel.workspace import Workspace  # noqa: E402

HELD_OUT = "yellow"  # the concept the curated set lacks and the reservoir holds
RECIPE = "wheel_shapes"
RESERVOIR = "shapes"
RECIPE_YAML = """name: wheel_shapes
description: the wheel-turn bench's curated set (rendered shapes), mixing in the pretrain track
stage: 1
resolution: 32
tasks: [T2I]
rules:
  - name: too_small
    column: width
    min: 16
    why: renders smaller than the model's patch grid
mix:
  - {{from: tracks/pretrain, weight: {weight}}}
"""


# ---- the world ------------------------------------------------------------------------------------------------
def rows_for(
    shapes: tuple[str, ...], colors: tuple[str, ...], per: int, size: int, seed: int, source: str
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for shape in shapes:
        for color in colors:
            for i in range(per):
                data = _png(render(shape, color, size, rng))
                cap = caption(shape, color)
                rows.append(
                    {
                        "id": sample_id(source, f"{source}#{shape}-{color}-{i}"),
                        "source": source,
                        "uri": f"{source}#{shape}-{color}-{i}",
                        "partition": 0,
                        "image": data,
                        "file_bytes": len(data),
                        "width": size,
                        "height": size,
                        "format": "PNG",
                        "resolution_megapixels": size * size / 1e6,
                        "caption": cap,
                        "task": "T2I",
                        "source_image": None,
                        "source_uri": None,
                        "meta": json.dumps({"shape": shape, "color": color}),
                    }
                )
    return rows


# ---- the independent detector -----------------------------------------------------------------------------------
# ---- steps ----------------------------------------------------------------------------------------------------
def write_rows(ws: Workspace, rows: list[dict[str, Any]]) -> None:
    """The rendered rows as the workspace's scored pool (one shard; the renders need no scoring models)."""
    store = ShardStore(ws.pool_dir)
    store.write(0, pa.Table.from_pylist(rows), fingerprint="bench:renders", row_group_size=16)
    store.write_manifest({})


def index_captions(ws: Workspace, text: Any) -> int:
    """The caption table of the workspace's retrieval index (MiniLM, as `flywheel index` builds it; the image
    table is left out: the router's coverage and the expansion's retrieval read captions)."""
    from flywheel.retrieval.engine import RetrievalEngine, vectors_to_arrow
    from flywheel.retrieval.metadata import pool_metadata

    meta = pool_metadata(ws)
    vectors = text.embed_texts(meta.column("caption").to_pylist())
    return RetrievalEngine(ws.root / "index").add(
        "caption", text.space, meta.append_column("vector", vectors_to_arrow(vectors))
    )


def add_reservoir_rows(ws: Workspace, rows: list[dict[str, Any]], text: Any) -> None:
    """Register reservoir `shapes`: its rows as the reservoir workspace's pool plus its caption index, the
    layout `flywheel reservoir add` writes (scored, indexed, never curated)."""
    from flywheel.reservoir import register, reservoir_workspace

    rws = reservoir_workspace(ws, RESERVOIR)
    write_rows(rws, rows)
    index_captions(rws, text)
    register(ws, RESERVOIR, "bench:rendered-shapes", len(rows))


def run_select(ws: Workspace, recipe_path: Path) -> dict[str, Any]:
    """`flywheel select` with the bench recipe: curated rows plus the `mix:` rows of tracks/pretrain."""
    from flywheel.recipes import load_recipe
    from flywheel.select import select

    result = select(ws, load_recipe(str(recipe_path)))
    mix_path = ws.selection_dir(RECIPE) / "mix.json"
    mix = json.loads(mix_path.read_text()) if mix_path.is_file() else {}
    return {"funnel": result.funnel.to_json(), "mix": mix}


def ingest_failures(ws: Workspace, results: list[dict[str, Any]], stage: str) -> int:
    """Failing outputs -> the bad-case store as evaluation cases. `expected_label` names the attribute the
    detector found wrong (the colour when the colour is wrong, else the shape), as an evaluation names the
    class it checked; the router looks that concept up in the index."""
    from flywheel.badcases import BadCase, BadCaseStore

    store = BadCaseStore.for_workspace(ws.root)
    cases = []
    for r in results:
        if r["ok"]:
            continue
        wrong = r["color"] if r["det"]["color"] != r["color"] else r["shape"]
        png = _png(r["image"])
        cases.append(
            BadCase(
                content_key=hashlib.sha256(
                    f"wheel-turn:{stage}:{r['shape']}:{r['color']}:{r['seed']}".encode()
                ).hexdigest(),
                kind="bad",
                source="evaluation",
                prompt=caption(r["shape"], r["color"]),
                origin=f"bench/wheel_turn.py:{stage}",
                prompt_id=f"{r['shape']}-{r['color']}",
                task="T2I",
                category="object",
                expected_label=wrong,
                output_image=store.put_image(png, "evaluation"),
                seed=r["seed"],
                reward=r["reward"],
                failure_tags=["object_missing"],
                checkpoint=stage,
            )
        )
    return store.ingest(cases).added


def route_cases(ws: Workspace, text: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The router (`flywheel route`: rules policy, coverage from the index) over the ingested cases, and its
    accuracy against the track each failure's construction implies: a failure of the held-out colour is a
    missing concept (pretrain), any other failure is a covered concept drawn badly (rl)."""
    from dataclasses import asdict

    from flywheel.badcases import BadCaseStore
    from pipelines.steps.loop import route

    summary = route(ws, text_embedder=text)
    cases = []
    for case in BadCaseStore.for_workspace(ws.root).list(kind="bad"):
        shape, color = case["prompt_id"].split("-")
        truth = "pretrain" if case["expected_label"] == HELD_OUT else "rl"
        cases.append({**case, "shape": shape, "color": color, "truth": truth})
    correct = sum(c["track"] == c["truth"] for c in cases)
    confusion: dict[str, int] = {}
    for c in cases:
        key = f"{c['truth']}->{c['track']}"
        confusion[key] = confusion.get(key, 0) + 1
    return cases, {
        "summary": asdict(summary),
        "accuracy": correct / len(cases) if cases else None,
        "cases": len(cases),
        "confusion": confusion,
    }


def expand(ws: Workspace, recipe_path: Path, text: Any) -> dict[str, Any]:
    """`flywheel tracks --track pretrain`: expansion over the pool and the registered reservoir, quality
    thresholds from the bench recipe, deduplicated against the curated set."""

    from flywheel.tracks.pretrain import ExpansionConfig
    from pipelines.steps.loop import write_tracks

    report = write_tracks(ws, ("pretrain",), expansion=ExpansionConfig(recipe=str(recipe_path)), text_embedder=text)
    return report.as_dict()["pretrain"]


def stage_cfg(name: str, args: argparse.Namespace, seed: int, **extra: Any) -> Any:
    from trainer.config import StageConfig

    base: dict[str, Any] = {
        "name": name,
        "model": {"preset": "tiny", "hidden": 96, "depth": 3, "heads": 4},
        "data": {
            "recipes": [RECIPE],
            "resolutions": [args.size],
            "aspect_ratios": [1.0],
            "batch_size": 8,
            "t2i_ratio": 1.0,
            "uncond_dropout": 0.1,
            "allow_missing_tasks": True,
        },
        "latents": {"patch_size": 4},
        "optim": {"lr": 2e-3},
        "schedule": {"kind": "cosine", "warmup_steps": 20},
        "train": {"steps": args.steps, "log_every": 1000, "checkpoint_every": 100000, "ema_decay": 0.98, "seed": seed},
    }
    for key, value in extra.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return StageConfig.from_dict(base)


def train(ws: Workspace, cfg: Any, encoder: Any) -> tuple[Path, dict[str, Any]]:
    from trainer.checkpoint import list_checkpoints
    from trainer.loop import Trainer

    trainer = Trainer(cfg, ws, encoder=encoder, log=lambda _m: None)
    result = trainer.run()
    return list_checkpoints(trainer.stage_dir)[-1], {
        "steps": result.steps_run,
        "loss_first": result.losses[0],
        "loss_last": float(np.mean(result.losses[-10:])),
        **trainer.data_summary(),
    }


def evaluate(
    ckpt: Path,
    encoder: Any,
    prompts: list[tuple[str, str]],
    samples: int,
    args: argparse.Namespace,
    asked: dict[tuple[str, str], str] | None = None,
):
    """Detector results for `samples` sampling seeds of every (shape, colour) prompt; `asked` replaces a
    prompt's text (colloquial or rewritten prompts), the detector still checks the (shape, colour)."""
    from trainer.generate import load_pipeline

    pipe = load_pipeline(ckpt, encoder=encoder)
    out = []
    texts = [(asked or {}).get((s, c), caption(s, c)) for s, c in prompts for _ in range(samples)]
    seeds = [1000 + k for _ in prompts for k in range(samples)]
    images = []
    for i in range(0, len(texts), 32):
        images += pipe.generate(
            texts[i : i + 32], seeds[i : i + 32], size=(args.size, args.size), steps=args.euler, guidance=3.0
        )
    for (shape, color), k in [(p, k) for p in prompts for k in range(samples)]:
        image = images[len(out)]
        det = detect(image)
        out.append(
            {
                "shape": shape,
                "color": color,
                "seed": 1000 + k,
                "det": det,
                "reward": reward(det, shape, color),
                "ok": det["shape"] == shape and det["color"] == color,
                "image": image,
            }
        )
    return out


def per_concept(results: list[dict[str, Any]]) -> dict[str, float]:
    """Shape accuracy per shape concept, colour accuracy per colour concept."""
    out = {}
    for shape in SHAPES:
        sel = [r for r in results if r["shape"] == shape]
        if sel:
            out[f"shape:{shape}"] = float(np.mean([r["det"]["shape"] == shape for r in sel]))
    for color in COLORS:
        sel = [r for r in results if r["color"] == color]
        if sel:
            out[f"color:{color}"] = float(np.mean([r["det"]["color"] == color for r in sel]))
    return out


COMPLAINT = "it did not follow what I asked for"


def colloquial(shape: str, color: str) -> str:
    """The casual request a user types instead of the training caption's form (the prompt track's case)."""
    return f"{color} {shape}"


def prompt_track(ws: Workspace, ckpt: Path, encoder: Any, text: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The prompt track on colloquial requests: evaluate them plainly, ingest the failures as feedback cases
    with the user's complaint, route them, write the prompt track (`write_tracks(..., ("prompt",))`), and
    re-evaluate the prompts routed there with the offline enhancer built from the track's pairs, same seeds."""
    from flywheel.badcases import BadCase, BadCaseStore
    from flywheel.enhancer import OfflineEnhancer
    from flywheel.tracks.common import track_dir
    from pipelines.steps.loop import route, write_tracks

    prompts = [(s, c) for s in SHAPES for c in COLORS]
    asked = {p: colloquial(*p) for p in prompts}
    plain = evaluate(ckpt, encoder, prompts, args.samples, args, asked)
    store = BadCaseStore.for_workspace(ws.root)
    cases = [
        BadCase(
            content_key=hashlib.sha256(f"wheel-turn:prompt:{r['shape']}:{r['color']}:{r['seed']}".encode()).hexdigest(),
            kind="bad",
            source="feedback",
            prompt=asked[(r["shape"], r["color"])],
            origin="bench/wheel_turn.py:prompt",
            prompt_id=f"colloquial-{r['shape']}-{r['color']}",
            output_image=store.put_image(_png(r["image"]), "feedback"),
            seed=r["seed"],
            complaint=COMPLAINT,
            checkpoint="retrain",
        )
        for r in plain
        if not r["ok"]
    ]
    store.ingest(cases)
    route(ws, text_embedder=text)
    routed = [c for c in store.list(source="feedback") if c["prompt_id"].startswith("colloquial-")]
    to_prompt = sorted({tuple(c["prompt_id"].split("-")[1:]) for c in routed if c["track"] == "prompt"})
    out: dict[str, Any] = {
        "feedback_cases": len(routed),
        "routed_to_prompt": sum(c["track"] == "prompt" for c in routed),
        "prompts": len(to_prompt),
    }
    if not to_prompt:
        return out
    written = write_tracks(ws, ("prompt",), text_embedder=text).prompt or {}
    enhancer = OfflineEnhancer.from_track(track_dir(ws, "prompt"))
    rewrites = dict(zip(to_prompt, enhancer.enhance([asked[p] for p in to_prompt]), strict=True))
    rewritten = evaluate(ckpt, encoder, list(to_prompt), args.samples, args, rewrites)
    before = [r for r in plain if (r["shape"], r["color"]) in rewrites]
    out.update(
        pairs=written.get("pairs", 0),
        examples={asked[p]: rewrites[p] for p in to_prompt[:3]},
        acc_before=float(np.mean([r["ok"] for r in before])),
        acc_after=float(np.mean([r["ok"] for r in rewritten])),
        reward_before=float(np.mean([r["reward"] for r in before])),
        reward_after=float(np.mean([r["reward"] for r in rewritten])),
    )
    return out


def rl_pairs(ws: Workspace, results: list[dict[str, Any]], prompts: set[tuple[str, str]], min_margin: float) -> int:
    """Best vs worst sample per rl prompt by the continuous reward -> tracks/rl pairs (agreed format)."""
    rows = []
    for shape, color in sorted(prompts):
        sel = sorted((r for r in results if (r["shape"], r["color"]) == (shape, color)), key=lambda r: -r["reward"])
        if len(sel) < 2:
            continue
        best = sel[0]
        for worse in sel[1:]:
            if best["reward"] - worse["reward"] < min_margin:
                continue
            rows.append(
                {
                    "prompt": caption(shape, color),
                    "chosen_image": _png(best["image"]),
                    "rejected_image": _png(worse["image"]),
                    "chosen_reward": best["reward"],
                    "rejected_reward": worse["reward"],
                    "margin": best["reward"] - worse["reward"],
                    "badcase_id": f"{shape}-{color}-{worse['seed']}",
                    "seed_chosen": best["seed"],
                    "seed_rejected": worse["seed"],
                    "checkpoint": "retrained",
                    "task": "T2I",
                }
            )
    if rows:
        store = ShardStore(ws.tracks_dir("rl"))
        store.write(0, pa.Table.from_pylist(rows), fingerprint="bench:rl", row_group_size=16)
        store.write_manifest({"track": "rl"})
    return len(rows)


def interval(deltas: list[float]) -> dict[str, float]:
    """Mean change and its 95% t-interval over seeds."""
    from scipy import stats

    d = np.array(deltas, dtype=np.float64)
    mean = float(d.mean())
    if len(d) < 2 or d.std(ddof=1) == 0:
        return {"mean": mean, "lo": mean, "hi": mean, "n": len(d)}
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": len(d)}
