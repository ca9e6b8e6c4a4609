"""One measured turn of the flywheel on rendered shapes: does retraining with the tracks fix what evaluation found?

World: PIL-rendered coloured shapes (circle, square, triangle in red/green/blue/yellow) on a light background.
The curated set holds no yellow object; a reservoir (scored rows that were never curated) holds every
(shape, colour), yellow included. (A colour, not a shape, is held out because the tiny 32 px model learns
colours within the CPU budget but not crisp shapes; shape accuracy is reported as the noisy concept it is.)
Per training seed:

0. data side (the product's steps): the renders without the held-out colour are the pool and `select` with
   the bench recipe curates them; a reservoir `shapes` (every colour) is registered in the layout
   `flywheel reservoir add` writes; the pool's and the reservoir's captions are indexed with MiniLM;
1. train a tiny MMDiT on the curated set (`flow` stage);
2. evaluate: generate every (colour, shape) prompt with several sampling seeds and score each output with an
   independent detector (foreground mask -> nearest colour, bounding-box fill ratio -> shape; it never sees a
   caption); failing outputs are ingested into the bad-case store (`expected_label` = the attribute found wrong);
3. route with the router (`pipelines.steps.loop.route`: the rules policy, coverage from the index); routing
   accuracy against the construction (held-out colour -> pretrain, else rl) is reported;
4. expand with `write_tracks(..., ("pretrain",))` (pool + reservoir, the recipe's quality rules, dedup against
   the curated set), then `select` again: the recipe's `mix: [{from: tracks/pretrain, weight}]` writes the
   mix rows and `selections/<recipe>/mix.json`;
5. retrain: continue from the step-1 checkpoint (`train.init_from`) on curated + mix, the trainer drawing the
   mix at its weight; re-evaluate;
6. DPO: for the prompts routed to rl after the retrain, several samples of the retrained model ranked by a
   continuous detector reward (chosen = best, rejected = every sample >= 0.1 lower) -> `tracks/rl` pairs ->
   the `dpo` stage from the retrained checkpoint; re-evaluate those prompts.

Reported per concept (shape accuracy for shapes, colour accuracy for colours) before/after over the training
seeds, with a 95% t-interval of the per-seed change. Still local: the renders are written as a pool without
the Ray scoring step (they need no scoring models), the index holds captions only (no image table), and the
RL pairs come from the bench's detector reward rather than the RL track (see docs/wheel_turn.md).

    python3 bench/wheel_turn.py --out docs/wheel_turn.json          # the measured run (about 25 min, 2 CPUs)
    python3 bench/wheel_turn.py --fast --out /tmp/wt.json            # the test suite's smoke version
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.wheel_world import BACKGROUND, COLORS, IDEAL_FILL, SHAPES, _png, caption, detect, render, reward  # noqa: E402, F401
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


def run_seed(seed: int, args: argparse.Namespace, encoder: Any, text: Any, root: Path) -> dict[str, Any]:
    ws = Workspace.at(root / f"seed{seed}")
    known = tuple(c for c in COLORS if c != HELD_OUT)
    ws.root.mkdir(parents=True, exist_ok=True)
    recipe_path = ws.root / f"{RECIPE}.yaml"
    recipe_path.write_text(RECIPE_YAML.format(weight=args.mix_weight))
    t0 = time.time()
    # the data side: renders without the held-out colour as the pool, selected by the recipe; every colour in
    # a registered reservoir; captions indexed for the router and the expansion
    write_rows(ws, rows_for(SHAPES, known, args.per_concept, args.size, seed, "curated"))
    first_select = run_select(ws, recipe_path)
    index_captions(ws, text)
    add_reservoir_rows(ws, rows_for(SHAPES, tuple(COLORS), args.per_concept, args.size, seed + 100, "reservoir"), text)
    prompts = [(s, c) for s in SHAPES for c in COLORS]
    base_ckpt, base_train = train(ws, stage_cfg("base", args, seed), encoder)
    before = evaluate(base_ckpt, encoder, prompts, args.samples, args)
    ingest_failures(ws, before, "base")
    cases, routing = route_cases(ws, text)
    expansion = expand(ws, recipe_path, text)
    second_select = run_select(ws, recipe_path)
    retrain_cfg = stage_cfg(
        "retrain",
        args,
        seed,
        train={"steps": args.retrain_steps, "init_from": str(base_ckpt)},
        schedule={"kind": "constant", "warmup_steps": 0},
        optim={"lr": 1e-3},
    )
    re_ckpt, re_train = train(ws, retrain_cfg, encoder)
    after = evaluate(re_ckpt, encoder, prompts, args.samples, args)
    # DPO on the prompts whose failures after the retrain were routed to rl, from the retrained model
    ingest_failures(ws, after, "retrain")
    after_cases, _ = route_cases(ws, text)
    rl_prompts = {(c["shape"], c["color"]) for c in after_cases if c["checkpoint"] == "retrain" and c["track"] == "rl"}
    rl_prompts = rl_prompts or {(s, c) for s in SHAPES for c in known}
    rl_list = sorted(rl_prompts)
    pool = evaluate(re_ckpt, encoder, rl_list, args.dpo_samples, args)
    n_pairs = rl_pairs(ws, pool, rl_prompts, 0.1)
    dpo = {"pairs": n_pairs}
    if n_pairs:
        dpo_cfg = stage_cfg(
            "dpo",
            args,
            seed,
            kind="dpo",
            dpo={"beta": args.beta},
            data={"uncond_dropout": 0.0, "batch_size": 4},
            train={"steps": args.dpo_steps, "init_from": str(re_ckpt)},
            schedule={"kind": "constant", "warmup_steps": 0},
            optim={"lr": 2e-4},
        )
        dpo_ckpt, dpo_train = train(ws, dpo_cfg, encoder)
        dpo_before = [r for r in after if (r["shape"], r["color"]) in rl_prompts]
        dpo_after = evaluate(dpo_ckpt, encoder, rl_list, args.samples, args)
        dpo.update(
            train={k: v for k, v in dpo_train.items() if k in ("steps", "loss_first", "loss_last")},
            reward_before=float(np.mean([r["reward"] for r in dpo_before])),
            reward_after=float(np.mean([r["reward"] for r in dpo_after])),
            acc_before=float(np.mean([r["ok"] for r in dpo_before])),
            acc_after=float(np.mean([r["ok"] for r in dpo_after])),
        )
    prompt = prompt_track(ws, re_ckpt, encoder, text, args)
    return {
        "seed": seed,
        "seconds": time.time() - t0,
        "prompt_track": prompt,
        "base_train": {k: base_train[k] for k in ("steps", "loss_first", "loss_last")},
        "retrain": {k: re_train[k] for k in ("steps", "loss_first", "loss_last", "weights", "drawn", "provenance")},
        "cases": {t: sum(c["track"] == t for c in cases) for t in ("pretrain", "rl", "prompt")},
        "routing": routing,
        "expansion": expansion,
        "expansion_rows": expansion["written"],
        "selection": {"curated": first_select["funnel"].get("kept"), "mix": second_select["mix"]},
        "before": per_concept(before),
        "after": per_concept(after),
        "dpo": dpo,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--per-concept", type=int, default=12, help="rendered images per (shape, colour)")
    p.add_argument("--steps", type=int, default=400, help="base training steps")
    p.add_argument("--retrain-steps", type=int, default=300)
    p.add_argument("--dpo-steps", type=int, default=60)
    p.add_argument("--mix-weight", type=float, default=0.3)
    p.add_argument("--beta", type=float, default=500.0)
    p.add_argument("--samples", type=int, default=6, help="sampling seeds per prompt in evaluation")
    p.add_argument("--dpo-samples", type=int, default=6)
    p.add_argument("--euler", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fast", action="store_true", help="smoke version for the test suite (numbers meaningless)")
    p.add_argument("--work", type=Path, default=None, help="workspace root (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--merge", type=Path, nargs="+", default=None, help="combine per-seed reports (run one process per seed)"
    )
    p.add_argument(
        "--prompt-track-from",
        type=Path,
        nargs="+",
        default=None,
        help="per-seed reports of a run made before the prompt-track step: measure it on their kept workspaces "
        "(--work) and retrained checkpoints, writing the reports back with it",
    )
    args = p.parse_args(argv)
    if args.prompt_track_from:
        return add_prompt_track(args)
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        runs = [run for part in parts for run in part["runs"]]
        command = (
            " && ".join(part["command"] for part in parts)
            + " && python3 bench/wheel_turn.py "
            + " ".join(argv if argv is not None else sys.argv[1:])
        )
        return finish(runs, parts[0]["settings"], max(p["seconds"] for p in parts), command, args.out, parts[0]["fast"])
    if args.fast:
        args.seeds, args.per_concept, args.steps, args.retrain_steps, args.dpo_steps = "0,1", 2, 6, 4, 2
        args.samples, args.dpo_samples, args.euler = 2, 3, 2
    import tempfile

    import torch

    from trainer.encoders import MiniLMCondition

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    root = args.work or Path(tempfile.mkdtemp(prefix="wheel-turn-"))
    from flywheel.models.embedders import MiniLMTextEmbedder

    encoder = MiniLMCondition("cpu")
    text = MiniLMTextEmbedder()
    started = time.time()
    runs = [run_seed(s, args, encoder, text, root) for s in seeds]
    command = "python3 bench/wheel_turn.py " + " ".join(argv if argv is not None else sys.argv[1:])
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return finish(runs, settings, time.time() - started, command, args.out, args.fast)


def add_prompt_track(args: argparse.Namespace) -> dict[str, Any]:
    """The prompt-track step on the workspaces a per-seed run kept (its settings, its retrained checkpoint)."""
    import torch

    from flywheel.models.embedders import MiniLMTextEmbedder
    from trainer.checkpoint import list_checkpoints
    from trainer.encoders import MiniLMCondition

    torch.set_num_threads(args.threads)
    encoder, text = MiniLMCondition("cpu"), MiniLMTextEmbedder()
    for path in args.prompt_track_from:
        part = json.loads(path.read_text())
        settings = argparse.Namespace(**part["settings"])
        for run in part["runs"]:
            ws = Workspace.at(Path(settings.work) / f"seed{run['seed']}")
            ckpt = list_checkpoints(ws.root / "checkpoints" / "retrain")[-1]
            run["prompt_track"] = prompt_track(ws, ckpt, encoder, text, settings)
            print(f"seed {run['seed']}: {run['prompt_track']}")
        path.write_text(json.dumps(part, indent=2))
    return part


def _before_after(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean before/after of `reward` and `acc` over seeds, with the 95% interval of the per-seed change."""
    out = {}
    if parts:
        for metric in ("reward", "acc"):
            b = [d[f"{metric}_before"] for d in parts]
            a = [d[f"{metric}_after"] for d in parts]
            out[metric] = {
                "before": float(np.mean(b)),
                "after": float(np.mean(a)),
                "change_95ci": interval([y - x for x, y in zip(b, a, strict=True)]),
            }
    return out


def finish(
    runs: list[dict[str, Any]], settings: dict[str, Any], seconds: float, command: str, out: Path | None, fast: bool
) -> dict[str, Any]:
    """Aggregate per-seed runs: per concept before/after and the 95% interval of the change; DPO likewise."""
    size = int(settings["size"])
    # detector sanity on clean renders (its accuracy bounds what any model can score)
    rng = np.random.default_rng(7)
    clean = [(s, c, detect(render(s, c, size, rng))) for s in SHAPES for c in COLORS for _ in range(5)]
    detector_acc = float(np.mean([d["shape"] == s and d["color"] == c for s, c, d in clean]))
    concepts = {}
    for key in runs[0]["before"]:
        b = [r["before"][key] for r in runs]
        a = [r["after"][key] for r in runs]
        concepts[key] = {
            "held_out": key == f"color:{HELD_OUT}",
            "before": float(np.mean(b)),
            "after": float(np.mean(a)),
            "per_seed_before": b,
            "per_seed_after": a,
            "change_95ci": interval([y - x for x, y in zip(b, a, strict=True)]),
        }
    dpo = _before_after([r["dpo"] for r in runs if "reward_after" in r["dpo"]])
    prompt = _before_after([r["prompt_track"] for r in runs if "acc_after" in r.get("prompt_track", {})])
    routing = [r["routing"]["accuracy"] for r in runs if r.get("routing", {}).get("accuracy") is not None]
    report = {
        "command": command,
        "machine": "2-core x86_64 CPU, no GPU (shared)",
        "fast": fast,
        "settings": settings,
        "seconds": seconds,
        "detector_accuracy_on_clean_renders": detector_acc,
        "concepts": concepts,
        "dpo": dpo,
        "routing_accuracy": float(np.mean(routing)) if routing else None,
        "prompt_track": prompt or "not measured: no colloquial request was routed to the prompt track",
        "runs": runs,
    }
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    for key, c in concepts.items():
        ci = c["change_95ci"]
        print(
            f"{key:<14} before {c['before']:.3f} after {c['after']:.3f}  change {ci['mean']:+.3f} "
            f"[{ci['lo']:+.3f}, {ci['hi']:+.3f}]" + ("  <- held out" if c["held_out"] else "")
        )
    for metric, d in dpo.items():
        ci = d["change_95ci"]
        print(
            f"dpo {metric:<10} before {d['before']:.3f} after {d['after']:.3f}  change {ci['mean']:+.3f} "
            f"[{ci['lo']:+.3f}, {ci['hi']:+.3f}]"
        )
    for metric, d in prompt.items():
        ci = d["change_95ci"]
        print(
            f"prompt {metric:<7} before {d['before']:.3f} after {d['after']:.3f}  change {ci['mean']:+.3f} "
            f"[{ci['lo']:+.3f}, {ci['hi']:+.3f}]"
        )
    print(f"{report['seconds']:.0f} s; detector accuracy on clean renders {detector_acc:.3f}")
    return report


if __name__ == "__main__":
    main()
