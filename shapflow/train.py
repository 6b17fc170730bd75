"""The ONE training loop: full training, retraining, pruned fine-tuning, sFT and plain FT.

Every use differs only by its initial model, its data and its ``TrainConfig``. The loss is the
DDPM epsilon-prediction MSE with a linear beta schedule; timesteps are drawn antithetically
(t and T-1-t in one batch) to lower the variance of the loss; the optimizer is Adam/AdamW with
linear warm-up, optional cosine decay and gradient clipping. EMA is explicit (see ``EMAConfig``).
All randomness comes from one seeded generator, so a run is deterministic on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from diffusers import DDPMScheduler, UNet2DModel
from tqdm.auto import tqdm

from shapflow.config import DiffusionConfig, TrainConfig
from shapflow.data import ContributorDataset

__all__ = ["TrainResult", "ddpm_scheduler", "diffusion_loss", "sampling_state", "train"]


@dataclass
class TrainResult:
    """The trained model (raw weights), its EMA weights if any, and the loss per step."""

    model: UNet2DModel
    ema: dict[str, torch.Tensor] | None
    losses: list[float] = field(default_factory=list)


def ddpm_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """The forward-process schedule shared by training and sampling."""
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start,
                         beta_end=cfg.beta_end, beta_schedule=cfg.beta_schedule, prediction_type="epsilon")


def _antithetic_timesteps(batch: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """(batch,) timesteps where each draw t is paired with T-1-t."""
    half = torch.randint(0, steps, ((batch + 1) // 2,), generator=generator)
    return torch.cat([half, steps - 1 - half])[:batch]


def diffusion_loss(model: UNet2DModel, x0: torch.Tensor, scheduler: DDPMScheduler,
                   generator: torch.Generator) -> torch.Tensor:
    """Epsilon-prediction MSE on a batch x0 (B, C, H, W) with antithetic timesteps."""
    t = _antithetic_timesteps(x0.shape[0], scheduler.config.num_train_timesteps, generator)
    noise = torch.randn(x0.shape, generator=generator)
    x_t = scheduler.add_noise(x0, noise, t)
    return torch.nn.functional.mse_loss(model(x_t, t).sample, noise)


def _lr_lambda(cfg: TrainConfig):
    """Multiplier of the base learning rate at each step: linear warm-up, then constant or cosine."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def _batches(n_items: int, batch_size: int, generator: torch.Generator):
    """Endless index batches: shuffled epochs, concatenated, so small datasets cycle evenly."""
    buffer = torch.empty(0, dtype=torch.int64)
    while True:
        while buffer.numel() < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n_items, generator=generator)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def train(model: UNet2DModel, data: ContributorDataset, cfg: TrainConfig, diffusion: DiffusionConfig, *,
          ema_init: dict[str, torch.Tensor] | None = None, progress: bool = False, desc: str = "train") -> TrainResult:
    """Train ``model`` in place on ``data`` for ``cfg.steps`` steps.

    ``ema_init`` is the upstream EMA state, used only when ``cfg.ema.init == "continue"``; with
    ``init == "fresh"`` the EMA starts from the weights ``model`` has now.
    """
    if cfg.ema.init == "continue" and cfg.ema.decay > 0 and ema_init is None:
        raise ValueError("ema.init=continue needs the upstream model's EMA weights; the loaded model has none "
                         "(train upstream with ema.decay > 0, or use ema.init=fresh)")
    generator = torch.Generator().manual_seed(cfg.seed)
    scheduler = ddpm_scheduler(diffusion)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    ema = _init_ema(model, cfg, ema_init)
    batches = _batches(len(data), cfg.batch_size, generator)
    losses: list[float] = []
    model.train()
    for _ in tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False):
        loss = diffusion_loss(model, data.images[next(batches)], scheduler, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        lr_schedule.step()
        if ema is not None:
            _update_ema(ema, model, cfg.ema.decay)
        losses.append(loss.item())
    model.eval()
    return TrainResult(model, ema, losses)


def _init_ema(model: UNet2DModel, cfg: TrainConfig, ema_init: dict[str, torch.Tensor] | None):
    if cfg.ema.decay == 0:
        return None
    if cfg.ema.init == "continue":
        return {k: v.detach().clone() for k, v in ema_init.items()}
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def _update_ema(ema: dict[str, torch.Tensor], model: UNet2DModel, decay: float) -> None:
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            ema[name].lerp_(value, 1.0 - decay)
        else:
            ema[name].copy_(value)


def sampling_state(result: TrainResult, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights this stage's images (and downstream stages) use: EMA if configured, else raw."""
    if cfg.ema.sample_with_ema:
        return result.ema
    return {k: v.detach().clone() for k, v in result.model.state_dict().items()}
