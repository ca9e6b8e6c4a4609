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
