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
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.wheel_steps import (  # noqa: E402
    HELD_OUT,
    RECIPE,
    RECIPE_YAML,
    add_reservoir_rows,
    evaluate,
    expand,
    index_captions,
    ingest_failures,
    interval,
    per_concept,
    prompt_track,
    rl_pairs,
    route_cases,
    rows_for,
    run_select,
    stage_cfg,
    train,
    write_rows,
)
from bench.wheel_world import COLORS, SHAPES, detect, render  # noqa: E402
from flywheel.workspace import Workspace  # noqa: E402


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
