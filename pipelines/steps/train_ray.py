"""Ray Train entry: run a stage on a Ray cluster with `TorchTrainer` (one DDP rank per Ray worker).

Why a thin wrapper: Ray Train starts the workers and initialises `torch.distributed` (NCCL on GPUs, gloo on
CPUs) before calling the loop, and `trainer.loop.Trainer` already turns an initialised process group into DDP
plus a per-rank slice of every batch. The workspace must be on a filesystem every worker sees (NFS, a mounted
bucket): rank 0 writes checkpoints there and every rank reads the curated shards from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flywheel.errors import RunFailed
from trainer.checkpoint import list_checkpoints


def _loop(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch
    import torch

    from flywheel.workspace import Workspace
    from trainer.config import StageConfig
    from trainer.loop import Trainer

    if config["threads"]:
        torch.set_num_threads(int(config["threads"]))
    cfg = StageConfig.from_dict(config["stage"])
    device = str(ray.train.torch.get_device())
    trainer = Trainer(cfg, Workspace.at(config["workspace"]), device=device)
    if config["resume"]:
        trainer.resume("latest")
    result = trainer.run()
    ray.train.report(
        {
            "step": result.final_step,
            "steps_run": result.steps_run,
            "last_loss": result.losses[-1] if result.losses else None,
            "samples_per_s": result.samples / result.seconds if result.seconds else 0.0,
        }
    )


def train_on_ray(
    stage: dict[str, Any],
    workspace: Path,
    *,
    num_workers: int = 1,
    use_gpu: bool = False,
    resume: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run `stage` (a StageConfig dict) with `num_workers` DDP ranks; returns the final step and checkpoint.

    Connects to the Ray runtime already initialised by the caller (`ray.init(address=...)`). The outcome is
    read from the workspace (the checkpoint rank 0 wrote), not from Ray's result metrics, which Ray Train v2
    keeps only for reports that carry a Ray checkpoint."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from flywheel.workspace import Workspace

    runner = TorchTrainer(
        _loop,
        train_loop_config={
            "stage": stage,
            "workspace": str(Path(workspace).resolve()),
            "resume": resume,
            "threads": threads,
        },
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=f"flywheel-train-{stage['name']}", storage_path=str(Workspace.at(workspace).runs_dir / "ray_train")
        ),
    )
    result = runner.fit()
    if result.error is not None:
        raise RunFailed(f"Ray Train run failed: {result.error}") from result.error
    found = list_checkpoints(Workspace.at(workspace).checkpoints_dir(stage["name"]))
    if not found:
        raise RunFailed(f"Ray Train finished but wrote no checkpoint for stage {stage['name']}")
    state = json.loads((found[-1] / "state.json").read_text(encoding="utf-8"))
    return {"step": int(state["step"]), "checkpoint": str(found[-1]), "world": int(state["world"])}
