"""Rectified-flow matching: the training objective and the Euler ODE sampler with classifier-free guidance.

Convention (as in SD3/FLUX/Qwen-Image): x_t = (1 - t) * x_0 + t * noise, t in [0, 1], t = 1 is pure noise;
the model predicts the velocity v = noise - x_0 and the loss is the MSE to it. Sampling integrates dx/dt = v
from t = 1 to t = 0 with Euler steps. Timesteps are drawn logit-normal by default (more weight mid-trajectory),
and `time_shift` > 1 moves them towards noise for higher resolutions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t) if shift != 1.0 else t


def sample_timesteps(n: int, kind: str, shift: float, generator: torch.Generator) -> torch.Tensor:
    if kind == "logit_normal":
        t = torch.sigmoid(torch.randn(n, generator=generator))
    elif kind == "uniform":
        t = torch.rand(n, generator=generator)
    else:
        raise ValueError(f"unknown timestep sampling {kind!r}")
    return shift_time(t, shift)


def noisy_pair(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, target velocity) for clean latents x0 [B, N, C] at times t [B]."""
    tt = t.to(x0.dtype)[:, None, None]
    return (1 - tt) * x0 + tt * noise, noise - x0


def flow_loss(velocity: Velocity, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    xt, target = noisy_pair(x0, t, noise)
    pred = velocity(xt, t)
    return torch.mean((pred.float() - target.float()) ** 2)


def sigmas(steps: int, shift: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """steps+1 times from 1 to 0 (shifted)."""
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, device=device), shift)


@torch.no_grad()
def euler_sample(
    cond_velocity: Velocity,
    uncond_velocity: Velocity | None,
    noise: torch.Tensor,
    steps: int,
    guidance: float,
    shift: float = 1.0,
) -> torch.Tensor:
    """Integrate from noise (t=1) to data (t=0). With `uncond_velocity` and guidance != 1, CFG:
    v = v_uncond + guidance * (v_cond - v_uncond)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    x = noise
    ts = sigmas(steps, shift, noise.device)
    for i in range(steps):
        t = ts[i].expand(x.shape[0])
        v = cond_velocity(x, t)
        if uncond_velocity is not None and guidance != 1.0:
            v_u = uncond_velocity(x, t)
            v = v_u + guidance * (v - v_u)
        x = x + (ts[i + 1] - ts[i]) * v
    return x


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample over every latent element: [B, N, C] -> [B]."""
    return ((pred.float() - target.float()) ** 2).flatten(1).mean(dim=1)


def dpo_loss(
    policy: Velocity,
    reference: Velocity,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    beta: float,
    sft_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Diffusion-DPO (Wallace et al. 2023) on rectified flow: the preference loss of one pair batch.

    Chosen and rejected latents are noised with the *same* noise and timestep, so the only difference between
    the two regression problems is the image. With e = per-sample velocity MSE,
        d = (e_policy(chosen) - e_ref(chosen)) - (e_policy(rejected) - e_ref(rejected)),
        loss = -log sigmoid(-beta/2 * d):
    the policy is rewarded for fitting the chosen image better, relative to the frozen reference, than the
    rejected one. When policy == reference, d = 0 and the loss is log 2 exactly. `sft_weight` adds that much
    of the chosen images' plain velocity MSE. Both images go through one
    forward of 2B samples. Returns the mean loss and detached statistics (implicit accuracy: share of pairs
    with d < 0; the mean of d).
    """
    xw, vw = noisy_pair(chosen, t, noise)
    xl, vl = noisy_pair(rejected, t, noise)
    x = torch.cat([xw, xl])
    tt = torch.cat([t, t])
    target = torch.cat([vw, vl])
    err_policy = per_sample_mse(policy(x, tt), target)
    with torch.no_grad():
        err_ref = per_sample_mse(reference(x, tt), target)
    n = chosen.shape[0]
    diff = (err_policy[:n] - err_ref[:n]) - (err_policy[n:] - err_ref[n:])
    loss = -torch.nn.functional.logsigmoid(-0.5 * beta * diff).mean()
    if sft_weight > 0:
        loss = loss + sft_weight * err_policy[:n].mean()
    stats = {
        "implicit_acc": (diff < 0).float().mean().detach(),
        "diff": diff.mean().detach(),
        "chosen_mse": err_policy[:n].mean().detach(),
        "rejected_mse": err_policy[n:].mean().detach(),
    }
    return loss, stats
