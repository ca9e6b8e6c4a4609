"""The training loop: flow matching on curated shards with AdamW, warmup/schedule, clipping, EMA, checkpoints.

One loop for every stage type: the stage's `kind` selects the data (curated + mixed rows, or preference pairs)
and the loss (`flow_loss`, or `dpo_loss` against a frozen reference copy of the starting checkpoint); the
optimizer, schedule, EMA, checkpoints and exact resume are shared. A stage may start from another stage's
checkpoint (`train.init_from`), which is how a retraining turn continues from the latest model.

Why the loop owns one torch.Generator for noise and timesteps (kept on the CPU): it is the only randomness of
a step besides the data plan, so saving its state (and the loader position) makes resume exact. Multi-GPU: when
`torch.distributed` is initialised (torchrun, or Ray Train's TorchTrainer) the model is wrapped in DDP and the
loader takes this rank's slice of each global batch; rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from flywheel.config import ConfigError
from flywheel.errors import UserError
from flywheel.workspace import Workspace
from trainer.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    rng_from_list,
    rng_to_list,
    save_checkpoint,
    step_dir,
)
from trainer.config import StageConfig
from trainer.data.buckets import make_buckets
from trainer.data.index import build_pair_index, build_plan_index, pair_shards, resolve_data
from trainer.data.loader import Batch, BatchPlanner, LoaderState, batch_iterator
from trainer.encoders import MiniLMCondition, VLMCondition
from trainer.flow import dpo_loss, flow_loss, sample_timesteps
from trainer.runtime import Parts, build_parts

REFERENCE_FILE = "reference.safetensors"  # DPO checkpoints: the frozen reference weights, for exact resume


class ResumeError(UserError):
    pass


def lr_at(step: int, cfg: StageConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then constant/cosine/linear decay."""
    base, sched, total = cfg.optim.lr, cfg.schedule, cfg.train.steps
    if step < sched.warmup_steps:
        return base * (step + 1) / sched.warmup_steps
    if sched.kind == "constant":
        return base
    progress = min(1.0, (step - sched.warmup_steps) / max(1, total - sched.warmup_steps))
    floor = base * sched.min_lr_ratio
    if sched.kind == "cosine":
        return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return base - (base - floor) * progress


@dataclass
class StepLog:
    step: int
    loss: float
    lr: float
    grad_norm: float
    samples: int
    tokens: int
    seconds: float
    data_seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    steps_run: int
    final_step: int
    losses: list[float] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    samples: int = 0
    data_seconds: float = 0.0
    drawn: dict[str, int] = field(default_factory=dict)  # rows drawn per source over the whole stage
    provenance: dict[str, int] = field(default_factory=dict)


def adopt_init(cfg: StageConfig, workspace: Workspace) -> tuple[StageConfig, Path | None]:
    """Resolve `train.init_from` and take the model/latent/encoder sections from that checkpoint, so a stage
    that continues another one never disagrees with its shapes. (cfg, None) when there is no init."""
    if cfg.train.init_from is None:
        if cfg.kind == "dpo":
            raise ConfigError(
                f"stage {cfg.name} is a dpo stage and needs train.init_from: the checkpoint whose frozen copy is "
                "the reference (e.g. stage1_tiny_cpu, or --init-from on the command line)"
            )
        return cfg, None
    path = resolve_checkpoint(workspace.root, cfg.train.init_from)
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    src = state["config"]
    return cfg.replace(model=src["model"], latents=src["latents"], encoder=src["encoder"]), path


class Trainer:
    def __init__(
        self,
        cfg: StageConfig,
        workspace: Workspace,
        *,
        encoder: MiniLMCondition | VLMCondition | None = None,
        device: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        cfg, self.init_path = adopt_init(cfg, workspace)
        self.cfg, self.workspace, self.log = cfg, workspace, log
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.parts: Parts = build_parts(cfg, encoder=encoder, device=device)
        self.device = self.parts.device
        self.model = self.parts.model
        if self.init_path is not None:
            # the evaluated weights (EMA) of the starting checkpoint: what produced the bad cases being fixed
            self.model.load_state_dict(load_file(self.init_path / "ema.safetensors"))
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.reference: torch.nn.Module | None = None
        if cfg.kind == "dpo":
            self.reference = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.net: torch.nn.Module = self.model
        if self.world > 1:
            ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
            # find_unused_parameters: some parameters get no gradient in a step (the last MMDiT block's text
            # stream feeds nothing after it; the source-image path only runs on TI2I batches). Without it DDP
            # waits for their gradients and fails the next step ("Expected to have finished reduction").
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=True
            )
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=o.lr, betas=(o.betas[0], o.betas[1]), eps=o.eps, weight_decay=o.weight_decay
        )
        self.generator = torch.Generator().manual_seed(cfg.train.seed * 1000 + self.rank)
        buckets = make_buckets(cfg.data.resolutions, cfg.data.aspect_ratios, self.parts.latents.downsample)
        self.pairs = cfg.kind == "dpo"
        self.data_notes: list[str] = []
        if self.pairs:
            self.index = build_pair_index(pair_shards(workspace, cfg.data), buckets)
        else:
            plan = resolve_data(workspace, cfg.data)
            self.data_notes = plan.notes + (
                [f"{plan.captioned} curated shard(s) read from captioned/ (fused captions)"] if plan.captioned else []
            )
            self.index = build_plan_index(plan, buckets)
        self.planner = BatchPlanner(self.index, cfg.data, cfg.train.seed, self.rank, self.world)
        self.data_notes += self.planner.notes
        self.loader_state = LoaderState(fingerprint=self.index.fingerprint())
        self.step = 0
        self.log_path = workspace.runs_dir / f"train-{cfg.name}.jsonl"
        self._eval_batch: Batch | None = None

    # ---- checkpoints -------------------------------------------------------------------------------------
    @property
    def stage_dir(self) -> Path:
        return self.workspace.checkpoints_dir(self.cfg.name)

    def state_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "stage": self.cfg.name,
            "config": self.cfg.to_dict(),
            "loader": self.loader_state.to_json(),
            "world": self.world,
            "rng": {
                "generator": rng_to_list(self.generator.get_state()),
                "torch_cpu": rng_to_list(torch.get_rng_state()),
            },
            "init_from": str(self.init_path) if self.init_path else None,
            "encoder": self.parts.encoder.name,
            "cond_dim": self.parts.encoder.dim,
            "token_channels": self.parts.latents.token_channels,
            "params": sum(p.numel() for p in self.model.parameters()),
        }

    def save(self) -> Path | None:
        path = None
        if self.rank == 0:
            path = save_checkpoint(
                step_dir(self.workspace.root, self.cfg.name, self.step),
                self.model.state_dict(),
                self.ema.state_dict(),
                self.optimizer.state_dict(),
                self.state_json(),
                extra={REFERENCE_FILE: self.reference.state_dict()} if self.reference is not None else None,
            )
        if self.world > 1:
            dist.barrier()
        return path

    def resume(self, spec: str | Path = "latest") -> bool:
        """Load the latest (or a given) checkpoint of this stage; False when there is none to resume."""
        if spec == "latest":
            found = list_checkpoints(self.stage_dir)
            if not found:
                return False
            spec = found[-1]
        ckpt = load_checkpoint(Path(spec))
        if ckpt.state.get("stage") != self.cfg.name:
            raise ResumeError(f"{spec} belongs to stage {ckpt.state.get('stage')!r}, not {self.cfg.name!r}")
        loader = LoaderState.from_json(ckpt.state["loader"])
        if loader.fingerprint != self.loader_state.fingerprint:
            raise ResumeError(
                f"the curated shards changed since {spec} was written (fingerprint "
                f"{loader.fingerprint} != {self.loader_state.fingerprint}); resuming would repeat or "
                "skip data. Start a new stage name, or restore the shards."
            )
        self.model.load_state_dict(ckpt.model)
        self.ema.load_state_dict(ckpt.ema)
        self.optimizer.load_state_dict(ckpt.optimizer)
        if self.reference is not None:
            ref = Path(spec) / REFERENCE_FILE
            if not ref.is_file():
                raise ResumeError(f"{spec} is a dpo checkpoint without {REFERENCE_FILE}; cannot restore the reference")
            self.reference.load_state_dict(load_file(ref))
        self.generator.set_state(rng_from_list(ckpt.state["rng"]["generator"]))
        self.loader_state = loader
        self.step = ckpt.step
        self.log(f"resumed {self.cfg.name} at step {self.step} from {spec}")
        return True

    # ---- one step ----------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.train.precision == "bf16":
            return torch.autocast(device_type="cuda" if self.device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def micro_loss(self, batch: Batch) -> tuple[torch.Tensor, int]:
        if self.pairs:
            loss, tokens, _ = self.pair_loss(batch)
            return loss, tokens
        lat = self.parts.latents
        x0, grid = lat.encode(batch.images.to(self.device, non_blocking=True))
        source = lat.encode(batch.sources.to(self.device, non_blocking=True))[0] if batch.sources is not None else None
        cond, mask = self.parts.condition(batch.captions, batch.sources)
        tcfg = self.cfg.train
        t = sample_timesteps(x0.shape[0], tcfg.timestep_sampling, tcfg.time_shift, self.generator).to(self.device)
        noise = torch.randn(x0.shape, generator=self.generator).to(self.device, x0.dtype)
        with self._autocast():
            loss = flow_loss(lambda xt, tt: self.net(xt, tt, cond, mask, grid, source), x0, t, noise)
        tokens = x0.shape[0] * (x0.shape[1] * (2 if source is not None else 1) + cond.shape[1])
        return loss, tokens

    def pair_loss(self, batch: Batch) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
        """Diffusion-DPO on one pair batch: one noise and one timestep per pair, shared by chosen and rejected."""
        if batch.rejected is None or self.reference is None:
            raise ValueError("a dpo stage needs preference batches (chosen and rejected images)")
        lat = self.parts.latents
        xw, grid = lat.encode(batch.images.to(self.device, non_blocking=True))
        xl = lat.encode(batch.rejected.to(self.device, non_blocking=True))[0]
        source = lat.encode(batch.sources.to(self.device, non_blocking=True))[0] if batch.sources is not None else None
        cond, mask = self.parts.condition(batch.captions, batch.sources)
        cond2, mask2 = cond.repeat(2, 1, 1), mask.repeat(2, 1)
        src2 = source.repeat(2, 1, 1) if source is not None else None
        tcfg = self.cfg.train
        t = sample_timesteps(xw.shape[0], tcfg.timestep_sampling, tcfg.time_shift, self.generator).to(self.device)
        noise = torch.randn(xw.shape, generator=self.generator).to(self.device, xw.dtype)
        reference = self.reference
        with self._autocast():
            loss, stats = dpo_loss(
                lambda xt, tt: self.net(xt, tt, cond2, mask2, grid, src2),
                lambda xt, tt: reference(xt, tt, cond2, mask2, grid, src2),
                xw,
                xl,
                t,
                noise,
                self.cfg.dpo.beta,
                self.cfg.dpo.sft_weight,
            )
        tokens = 2 * xw.shape[0] * (xw.shape[1] * (2 if source is not None else 1) + cond.shape[1])
        return loss, tokens, stats

    @torch.no_grad()
    def fixed_loss(self, batch: Batch, seed: int = 1234, repeats: int = 4) -> float:
        """Loss on `batch` with fixed noise and timesteps: a comparable number before and after training."""
        saved = self.generator.get_state()
        self.generator.manual_seed(seed)
        self.model.eval()
        try:
            return sum(float(self.micro_loss(batch)[0]) for _ in range(repeats)) / repeats
        finally:
            self.generator.set_state(saved)

    def eval_batch(self) -> Batch:
        """One fixed batch, planned with its own seed so reading it never moves the training loader's state.

        The trainer has no held-out split of the curated shards, so this measures the fixed-noise loss on the
        same batch at every interval: a comparable curve, not a generalisation estimate.
        """
        if self._eval_batch is None:
            planner = BatchPlanner(self.index, self.cfg.data, self.cfg.train.seed + 7919, self.rank, self.world)
            start = LoaderState(fingerprint=self.index.fingerprint())
            self._eval_batch, _ = next(batch_iterator(planner, start, 0, self.cfg.data.row_group_cache, self.pairs))
        return self._eval_batch

    def evaluate(self) -> float:
        """`fixed_loss` on the eval batch, averaged across ranks (every rank must call it, as with DDP)."""
        return self._mean_across_ranks(self.fixed_loss(self.eval_batch()))

    def _mean_across_ranks(self, value: float) -> float:
        """All-reduce a rank-local mean so the log shows the whole job's number, not rank 0's (as DiT does)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.cfg.train.ema_decay
        for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - decay)

    def train_step(self, batches: Iterator[tuple[Batch, LoaderState]]) -> StepLog:
        started = time.perf_counter()
        accum = self.cfg.train.grad_accum
        total, samples, tokens, data_seconds = 0.0, 0, 0, 0.0
        extra: dict[str, float] = {}
        self.model.train()
        for micro in range(accum):
            t0 = time.perf_counter()
            batch, after = next(batches)
            data_seconds += time.perf_counter() - t0
            sync = self.world == 1 or micro == accum - 1 or not hasattr(self.net, "no_sync")
            with contextlib.nullcontext() if sync else self.net.no_sync():
                if self.pairs:
                    loss, n_tokens, stats = self.pair_loss(batch)
                    for key, value in stats.items():
                        extra[key] = extra.get(key, 0.0) + float(value) / accum
                else:
                    loss, n_tokens = self.micro_loss(batch)
                (loss / accum).backward()
            total += float(loss.detach()) / accum
            samples += batch.images.shape[0]
            tokens += n_tokens
            self.loader_state = after
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip))
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return StepLog(
            self.step, total, lr, grad_norm, samples, tokens, time.perf_counter() - started, data_seconds, extra
        )

    # ---- the run -----------------------------------------------------------------------------------------
    def batches(self) -> Iterator[tuple[Batch, LoaderState]]:
        return batch_iterator(
            self.planner, self.loader_state, self.cfg.data.num_workers, self.cfg.data.row_group_cache, self.pairs
        )

    def data_summary(self) -> dict[str, Any]:
        """The mix the stage is configured for and the mix it has drawn so far (rows of the global batches)."""
        rows = {s: int((self.index.source_of == i).sum()) for i, s in enumerate(self.index.sources)}
        drawn = dict(self.loader_state.drawn)
        total = sum(drawn.values())
        return {
            "weights": {s: round(float(w), 6) for s, w in zip(self.planner.sources, self.planner.weights, strict=True)},
            "rows": rows,
            "drawn": drawn,
            "drawn_share": {s: round(n / total, 4) for s, n in drawn.items()} if total else {},
            "provenance": dict(self.loader_state.provenance),
            **self.category_summary(),
        }

    def category_summary(self) -> dict[str, Any]:
        """Curated rows drawn per category against the recipe's shares (empty when the recipe sets none)."""
        if not self.planner.categories:
            return {}
        drawn = dict(self.loader_state.categories)
        total = sum(drawn.values())
        weights = zip(self.planner.categories, self.planner.category_weights, strict=True)
        return {
            "category_weights": {c: round(float(w), 6) for c, w in weights},
            "category_drawn": drawn,
            "category_drawn_share": {c: round(n / total, 4) for c, n in drawn.items()} if total else {},
        }

    def run(self, steps: int | None = None) -> TrainResult:
        """Train until `cfg.train.steps` (or `steps` more steps, if given), checkpointing on the way."""
        target = self.cfg.train.steps if steps is None else self.step + steps
        result = TrainResult(steps_run=0, final_step=self.step)
        if self.step >= target:
            return result
        if self.rank == 0:
            self.log(
                f"stage {self.cfg.name}: {self.index.rows} rows in {len(self.index.shards)} shard(s), "
                f"{len(self.planner.groups)} task/bucket groups, T2I ratio {self.planner.effective_t2i_ratio}; "
                f"model {sum(p.numel() for p in self.model.parameters()) / 1e6:.2f}M params on {self.device}"
                + (f"; initialised from {self.init_path}" if self.init_path and self.step == 0 else "")
            )
            mix = self.data_summary()
            if len(mix["weights"]) > 1:
                self.log(f"data mix (draw probability per source): {mix['weights']}; rows: {mix['rows']}")
            if "category_weights" in mix:
                self.log(f"categories (draw probability of curated rows): {mix['category_weights']}")
            for note in self.data_notes:
                self.log(note)
        batches = self.batches()
        window: list[StepLog] = []
        started = time.perf_counter()
        while self.step < target:
            entry = self.train_step(batches)
            result.losses.append(entry.loss)
            result.samples += entry.samples
            result.data_seconds += entry.data_seconds
            window.append(entry)
            if self.step % self.cfg.train.log_every == 0 or self.step == target:
                self._log_window(window)
                window = []
            every = self.cfg.train.eval_every  # a preference stage logs its implicit accuracy instead
            if every and not self.pairs and (self.step % every == 0 or self.step == target):
                self._log_eval(self.evaluate())
            if self.step % self.cfg.train.checkpoint_every == 0 or self.step == target:
                path = self.save()
                if path is not None:
                    result.checkpoints.append(path)
        result.seconds = time.perf_counter() - started
        result.steps_run = len(result.losses)
        result.final_step = self.step
        result.drawn, result.provenance = dict(self.loader_state.drawn), dict(self.loader_state.provenance)
        if self.rank == 0:
            mix = self.data_summary()
            self.log(
                f"drew {mix['drawn']} rows per source (share {mix['drawn_share']}); provenance {mix['provenance']}"
            )
            if "category_drawn" in mix:
                share = mix["category_drawn_share"]
                self.log(f"drew {mix['category_drawn']} curated rows per category (share {share})")
            self._append({"event": "data_mix", "step": self.step, **mix, "time": time.time()})
        return result

    def _append(self, record: dict[str, Any]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _log_window(self, window: list[StepLog]) -> None:
        if not window:
            return
        loss = self._mean_across_ranks(sum(e.loss for e in window) / len(window))  # a collective: every rank
        if self.rank != 0:
            return
        seconds = sum(e.seconds for e in window)
        record = {
            "step": window[-1].step,
            "loss": loss,
            "lr": window[-1].lr,
            "grad_norm": window[-1].grad_norm,
            "samples_per_s": sum(e.samples for e in window) * self.world / seconds,
            "tokens_per_s": sum(e.tokens for e in window) * self.world / seconds,
            "data_wait": sum(e.data_seconds for e in window) / seconds,
            "drawn": dict(self.loader_state.drawn),
            **({"drawn_category": dict(self.loader_state.categories)} if self.planner.categories else {}),
            "time": time.time(),
        }
        for key in window[-1].extra:
            record[key] = sum(e.extra.get(key, 0.0) for e in window) / len(window)
        self.log(
            f"step {record['step']:>7d}  loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
            f"gnorm {record['grad_norm']:.3f}  {record['samples_per_s']:.1f} samples/s  "
            f"data wait {100 * record['data_wait']:.1f}%"
            + (f"  implicit acc {record['implicit_acc']:.2f}" if "implicit_acc" in record else "")
        )
        self._append(record)

    def _log_eval(self, eval_loss: float) -> None:
        if self.rank != 0:
            return
        self.log(f"step {self.step:>7d}  eval loss {eval_loss:.4f} (fixed batch and noise)")
        self._append({"step": self.step, "eval_loss": eval_loss, "time": time.time()})
