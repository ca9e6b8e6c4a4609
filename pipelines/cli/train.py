"""`flywheel` commands of the train part: train, generate, evaluate. `register` adds them to the main app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli.common import WorkspaceOpt, console, err, parse_seeds
from pipelines.cli.common import fail as _fail

CheckpointOpt = Annotated[
    str,
    typer.Option("--checkpoint", "-c", help="Checkpoint folder, a stage name (its latest step) or STAGE/step-NNNNNNN."),
]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu or cuda (default: the stage's train.device / auto).")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: torch's choice).")]
EnhancerOpt = Annotated[
    str | None,
    typer.Option(help="Rewrite prompts first: 'offline' (the workspace's prompt track) or an OpenAI-compatible URL."),
]
EnhancerModelOpt = Annotated[
    str | None, typer.Option(help="Model at the --enhancer URL (or FLYWHEEL_ENHANCER_MODEL); key: OPENAI_API_KEY.")
]


def _threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _size(size: str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        w, _, h = size.lower().partition("x")
        return int(w), int(h or w)
    except ValueError:
        _fail(f"--size must be WIDTHxHEIGHT or one number, got {size!r}")
    return None


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""

    @app.command()
    def train(
        workspace: WorkspaceOpt,
        stage: Annotated[str, typer.Option(help="Built-in stage name or a stage YAML path.")] = "stage1_tiny_cpu",
        steps: Annotated[int | None, typer.Option(min=1, help="Override train.steps (total, not additional).")] = None,
        resume: Annotated[bool, typer.Option(help="Resume from the stage's latest checkpoint if there is one.")] = True,
        device: DeviceOpt = None,
        threads: ThreadsOpt = None,
        ray_workers: Annotated[
            int,
            typer.Option(
                min=0, help="Train with Ray Train on N DDP workers (0: in this process; torchrun also works)."
            ),
        ] = 0,
        ray_address: Annotated[str | None, typer.Option(help="Ray cluster address for --ray-workers.")] = None,
        ray_gpu: Annotated[bool, typer.Option(help="One GPU per Ray worker.")] = False,
        init_from: Annotated[
            str | None,
            typer.Option(
                help="Start from this checkpoint's weights (folder, stage name or STAGE/step-N) when the stage "
                "has none of its own; overrides train.init_from (rl_dpo: the frozen reference)."
            ),
        ] = None,
    ) -> None:
        """Train STAGE on WORKSPACE/curated/<recipe> shards (+ captioned and the recipe's mix: sources), or a
        preference stage (--stage rl_dpo) on WORKSPACE/tracks/rl; checkpoints go to WORKSPACE/checkpoints/<stage>/."""
        from flywheel.workspace import Workspace
        from trainer.config import load_stage
        from trainer.loop import Trainer

        _threads(threads)
        cfg = load_stage(stage)
        if steps is not None:
            cfg = cfg.replace(train={"steps": steps})
        if device is not None:
            cfg = cfg.replace(train={"device": device})
        if init_from is not None:
            cfg = cfg.replace(train={"init_from": init_from})
        if ray_workers:
            from pipelines.ray_runtime import init_ray
            from pipelines.steps.train_ray import train_on_ray

            init_ray(ray_address)
            metrics = train_on_ray(
                cfg.to_dict(), workspace, num_workers=ray_workers, use_gpu=ray_gpu, resume=resume, threads=threads
            )
            console.print(f"Ray Train finished stage {cfg.name}: {metrics}")
            return
        trainer = Trainer(cfg, Workspace.at(workspace), log=lambda m: err.print(m))
        if resume:
            trainer.resume("latest")
        result = trainer.run()
        if not result.steps_run:
            console.print(f"stage {cfg.name} is already at step {result.final_step} (train.steps={cfg.train.steps})")
            return
        first, last = result.losses[0], result.losses[-1]
        console.print(
            f"trained {result.steps_run} steps to step {result.final_step} in {result.seconds:.1f}s "
            f"({result.samples / result.seconds:.1f} samples/s, data wait "
            f"{100 * result.data_seconds / result.seconds:.1f}%); loss {first:.4f} -> {last:.4f}"
        )
        if len(result.drawn) > 1:
            total = sum(result.drawn.values())
            share = ", ".join(f"{s} {n} ({n / total:.1%})" for s, n in result.drawn.items())
            console.print(f"rows drawn per source: {share}; provenance {result.provenance}")
        if result.checkpoints:
            console.print(f"checkpoint: {result.checkpoints[-1]}")

    @app.command()
    def generate(
        workspace: WorkspaceOpt,
        prompt: Annotated[str, typer.Option("--prompt", "-p", help="Prompt (T2I) or edit instruction (TI2I).")],
        checkpoint: CheckpointOpt = "stage1_tiny_cpu",
        out: Annotated[Path, typer.Option("--out", "-o", help="Output PNG (seed suffix added if several).")] = Path(
            "generated.png"
        ),
        source: Annotated[Path | None, typer.Option(help="Source image: makes this an edit (TI2I).")] = None,
        seeds: Annotated[str, typer.Option(help="Comma-separated sampling seeds.")] = "0",
        steps: Annotated[int, typer.Option(min=1, help="Euler steps.")] = 20,
        guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = off).")] = 4.0,
        size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT (default: the stage's resolution).")] = None,
        weights: Annotated[str, typer.Option(help="ema or model.")] = "ema",
        enhancer: EnhancerOpt = None,
        enhancer_model: EnhancerModelOpt = None,
        device: DeviceOpt = None,
        threads: ThreadsOpt = None,
    ) -> None:
        """Generate images from a checkpoint (T2I, or an edit with --source), optionally rewriting the prompt."""
        from flywheel.enhancer import load_enhancer
        from flywheel.imaging import decode
        from trainer.checkpoint import resolve_checkpoint
        from trainer.generate import load_pipeline

        _threads(threads)
        seed_list = parse_seeds(seeds)
        src_image = None
        if source is not None:
            from PIL import Image

            if not source.is_file():
                _fail(f"--source {source} does not exist")
            decoded = decode(source.read_bytes(), view_short_side=2048)
            if not decoded.ok or decoded.rgb is None:
                _fail(f"--source {source} cannot be decoded ({decoded.broken_reason}: {decoded.broken_detail})")
            src_image = Image.fromarray(decoded.rgb)
        given = prompt
        if enhancer is not None:
            given = load_enhancer(enhancer, workspace.expanduser().resolve(), model=enhancer_model).enhance([prompt])[0]
            console.print(f"enhanced prompt: {given}")
        path = resolve_checkpoint(workspace.expanduser().resolve(), checkpoint)
        pipe = load_pipeline(path, weights=weights, device=device)
        images = pipe.generate(
            [given] * len(seed_list),
            seed_list,
            size=_size(size),
            steps=steps,
            guidance=guidance,
            sources=[src_image] * len(seed_list) if src_image else None,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        for seed, image in zip(seed_list, images, strict=True):
            target = out if len(seed_list) == 1 else out.with_name(f"{out.stem}-seed{seed}{out.suffix or '.png'}")
            image.save(target, format="PNG")
            console.print(f"wrote {target} ({image.width}x{image.height}, seed {seed}, step {pipe.checkpoint.step})")

    @app.command()
    def evaluate(
        workspace: WorkspaceOpt,
        checkpoint: CheckpointOpt = "stage1_tiny_cpu",
        prompts: Annotated[str, typer.Option(help="Built-in prompt set name or a prompt YAML path.")] = "default",
        seeds: Annotated[str, typer.Option(help="Comma-separated seeds per prompt.")] = "0,1,2",
        steps: Annotated[int, typer.Option(min=1, help="Euler steps.")] = 8,
        guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 4.0,
        size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT (default: the stage's resolution).")] = None,
        batch_size: Annotated[int, typer.Option(min=1, help="Outputs generated per batched sampling run.")] = 16,
        enhancer: EnhancerOpt = None,
        enhancer_model: EnhancerModelOpt = None,
        device: DeviceOpt = None,
        threads: ThreadsOpt = None,
    ) -> None:
        """Render the evaluation prompts, score them (OCR, classifier, image stats), write results and bad cases."""
        from flywheel.enhancer import load_enhancer
        from flywheel.models.embedders import clip_from_config
        from flywheel.retrieval.config import IndexConfig
        from flywheel.workspace import Workspace
        from trainer.checkpoint import resolve_checkpoint
        from trainer.evaluate.prompts import load_prompt_set
        from trainer.evaluate.run import EvalSettings
        from trainer.evaluate.run import evaluate as run_evaluate
        from trainer.generate import load_pipeline

        _threads(threads)
        seed_list = parse_seeds(seeds)
        root = workspace.expanduser().resolve()
        prompt_set = load_prompt_set(prompts)
        enh = load_enhancer(enhancer, root, model=enhancer_model) if enhancer is not None else None
        pipe = load_pipeline(resolve_checkpoint(root, checkpoint), device=device)
        settings = EvalSettings(
            seeds=seed_list,
            steps=steps,
            guidance=guidance,
            size=_size(size),
            batch_size=batch_size,
            enhancer=enh,
            clip=clip_from_config(IndexConfig.for_workspace(Workspace(root))),
        )
        result = run_evaluate(pipe, prompt_set, Workspace(root).evaluations_dir, settings, log=lambda m: err.print(m))
        table = Table(title=f"evaluation of {result.summary['checkpoint']} ({result.rows} outputs)")
        for col in ("category", "outputs", "pass rate", "mean reward", "failure tags"):
            table.add_column(col)
        for cat, s in result.summary["categories"].items():
            tags = ", ".join(f"{k} {v}" for k, v in sorted(s["failure_tags"].items())) or "-"
            table.add_row(cat, str(s["outputs"]), f"{s['pass_rate']:.2f}", f"{s['mean_reward']:.3f}", tags)
        console.print(table)
        ties = result.summary["ties"]
        console.print(
            f"{result.failed} bad case(s); {ties['prompts_with_tied_rewards']}/{ties['prompts']} prompt(s) with tied "
            f"rewards across seeds; results in {result.out_dir}/results.parquet"
        )
