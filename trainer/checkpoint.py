"""Checkpoints: safetensors for every tensor, one JSON file for everything else. No pickle anywhere.

    WORKSPACE/checkpoints/<stage>/step-NNNNNNN/
        model.safetensors       raw (non-EMA) weights
        ema.safetensors         EMA weights (what `generate`/`evaluate` use by default)
        optimizer.safetensors   AdamW state flattened to "<param index>.<key>" tensors
        state.json              step, loader position, RNG states as plain int lists, param groups, config

Why flatten the optimizer: `torch.save(optimizer.state_dict())` is a pickle, and loading a pickle from a shared
workspace can run code. A checkpoint folder is written under a temporary name and renamed, so a crash never
leaves a half checkpoint that a resume would pick up.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file, save_file

from flywheel.errors import UserError
from flywheel.store import fs as storage
from flywheel.store.fs import ObjectPath
from flywheel.store.shards import write_json_atomic
from flywheel.workspace import Workspace

STEP_DIR = re.compile(r"^step-(\d{7,})$")
CHECKPOINT_VERSION = 1


class CheckpointError(UserError):
    pass


def step_dir(root: Path, stage: str, step: int) -> Path:
    return Workspace(root).checkpoints_dir(stage) / f"step-{step:07d}"


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
    return tensors, state["param_groups"]


def unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": groups}


def rng_to_list(state: torch.Tensor) -> list[int]:
    return state.tolist()


def rng_from_list(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8)


@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def name(self) -> str:
        """`<stage>-step-NNNNNNN`: the folder name of its evaluations."""
        return f"{self.path.parent.name}-{self.path.name}"


def save_checkpoint(
    folder: Path,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    state: dict[str, Any],
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a checkpoint folder atomically; `extra` maps further file names to tensor dicts (e.g. a DPO
    stage's frozen reference weights)."""
    tmp = storage.staging_dir(folder)
    cpu = {k: v.detach().contiguous().cpu() for k, v in model.items()}
    save_file(cpu, tmp / "model.safetensors")
    save_file({k: v.detach().contiguous().cpu() for k, v in ema.items()}, tmp / "ema.safetensors")
    opt_tensors, groups = flatten_optimizer(optimizer)
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    for name, tensors in (extra or {}).items():
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / name)
    write_json_atomic(tmp / "state.json", {**state, "param_groups": groups, "version": CHECKPOINT_VERSION})
    for name in os.listdir(tmp):
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())
    storage.publish_dir(tmp, folder, last="state.json")
    return folder


def load_checkpoint(folder: Path, with_optimizer: bool = True) -> Checkpoint:
    for name in ("model.safetensors", "ema.safetensors", "state.json"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} is not a checkpoint: {name} is missing")
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    optimizer: dict[str, Any] = {}
    if with_optimizer:
        optimizer = unflatten_optimizer(_load(folder / "optimizer.safetensors"), state.pop("param_groups"))
    return Checkpoint(
        path=folder,
        model=_load(folder / "model.safetensors"),
        ema=_load(folder / "ema.safetensors"),
        optimizer=optimizer,
        state=state,
    )


def _load(path: Path | ObjectPath) -> dict[str, torch.Tensor]:
    """A safetensors file: memory-mapped when local, read whole from an object store."""
    return safetensors_load(path.read_bytes()) if isinstance(path, ObjectPath) else load_file(path)


def list_checkpoints(stage_dir: Path) -> list[Path]:
    if not stage_dir.is_dir():
        return []
    return sorted(p for p in stage_dir.iterdir() if p.is_dir() and STEP_DIR.match(p.name))


def resolve_checkpoint(workspace_root: Path, spec: str) -> Path:
    """A checkpoint folder from a path, `STAGE` (its latest step) or `STAGE/step-NNNNNNN`."""
    path = Path(spec)
    if (path / "state.json").is_file():
        return path
    base = Workspace(workspace_root).checkpoints_dir()
    candidate = base / spec
    if (candidate / "state.json").is_file():
        return candidate
    steps = list_checkpoints(candidate)
    if steps:
        return steps[-1]
    known = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
    raise CheckpointError(
        f"no checkpoint {spec!r} under {base} (stages with checkpoints: {known}); "
        "pass a checkpoint folder, a stage name, or STAGE/step-NNNNNNN"
    )
