"""The ONE training loop: full training, retraining, pruned fine-tuning, sFT and plain FT.

Every use differs only by its initial model, its data and its ``TrainConfig``. The loss is the
DDPM epsilon-prediction MSE with a linear beta schedule; timesteps are drawn antithetically
(t and T-1-t in one batch) to lower the variance of the loss; the optimizer is Adam/AdamW with
linear warm-up, optional cosine decay and gradient clipping. EMA is explicit (see ``EMAConfig``).
All randomness comes from one seeded generator, so a run is deterministic on CPU. ``precision``
(``shapflow.models.precision``) sets the arithmetic of the forward pass; the loss, gradients, optimizer and
EMA stay fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from diffusers import DDPMScheduler, UNet2DModel
from tqdm.auto import tqdm

from shapflow.config import DiffusionConfig, TrainConfig
from shapflow.data import ContributorDataset
from shapflow.models.precision import compute_precision
from shapflow.models.stacked import StackedModules

__all__ = ["Member", "TrainResult", "ddpm_scheduler", "diffusion_loss", "make_optimizer", "sampling_state", "train",
           "train_many"]


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
    """Epsilon-prediction MSE on a batch x0 (B, C, H, W) with antithetic timesteps.

    The timesteps and noise come from ``generator`` on the CPU, then move to x0's device, so a seed
    draws the same numbers on every device.
    """
    t = _antithetic_timesteps(x0.shape[0], scheduler.config.num_train_timesteps, generator)
    noise = torch.randn(x0.shape, generator=generator)
    t, noise = t.to(x0.device), noise.to(x0.device)
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


def make_optimizer(params: list[torch.Tensor], kind: str, lr: float, weight_decay: float, *,
                   fused: bool = True) -> torch.optim.Optimizer:
    """Adam or AdamW (``kind``) over ``params``, as ONE fused kernel on CPU and CUDA (``fused=False``: torch's
    default implementation, for comparison).

    Without ``fused`` torch runs Adam on CPU as a Python loop over the parameters (the pruned digits
    UNet has 104 small ones); fused, the digits sFT step is ~1.14x faster (``benchmarks/kernels.py``,
    row ``eager+unfused_adamw``).
    """
    optimizer_cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    fused = fused and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return optimizer_cls(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def _batches(n_items: int, batch_size: int, generator: torch.Generator):
    """Endless index batches: shuffled epochs, concatenated, so small datasets cycle evenly."""
    buffer = torch.empty(0, dtype=torch.int64)
    while True:
        while buffer.numel() < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n_items, generator=generator)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


@dataclass
class Member:
    """One model to train in a ``train_many`` batch: its start weights, its data and its recipe seed."""

    model: UNet2DModel
    data: ContributorDataset
    seed: int
    ema_init: dict[str, torch.Tensor] | None = None


class _Single:
    """One module trained as is (the default path: no vmap, torch's own gradient clipping)."""

    def __init__(self, model: UNet2DModel) -> None:
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]

    def losses(self, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.model(x_t[0], t[0]).sample.float(), noise[0])[None]

    def clip(self, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)  # on CPU the default loops in Python

    def state(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def results(self, ema: dict[str, torch.Tensor] | None, losses: list[list[float]]) -> list[TrainResult]:
        return [TrainResult(self.model, ema, losses[0])]


class _Stacked:
    """K architecture-equal modules trained in lockstep (``StackedModules``: parameters stacked on a leading
    member axis, the forward pass vmapped), so one kernel serves every member (small models on a GPU stop being
    launch-bound). AdamW, EMA and the loss are elementwise per member; clipping is per member."""

    def __init__(self, models: list[UNet2DModel]) -> None:
        self.models = models
        self.stacked = StackedModules(models, trainable=True)
        self.params = list(self.stacked.params.values())

    def losses(self, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        predicted = self.stacked(x_t, t).float()
        return (predicted - noise).pow(2).flatten(1).mean(1)

    def clip(self, max_norm: float) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.ndim - 1))))

    def state(self) -> dict[str, torch.Tensor]:
        return self.stacked.state()

    def results(self, ema: dict[str, torch.Tensor] | None, losses: list[list[float]]) -> list[TrainResult]:
        out = []
        for k, model in enumerate(self.models):
            with torch.no_grad():
                model.load_state_dict({name: value[k] for name, value in self.state().items()})
            member_ema = None if ema is None else {name: value[k].clone() for name, value in ema.items()}
            out.append(TrainResult(model, member_ema, losses[k]))
        return out


def train(model: UNet2DModel, data: ContributorDataset, cfg: TrainConfig, diffusion: DiffusionConfig, *,
          ema_init: dict[str, torch.Tensor] | None = None, progress: bool = False, desc: str = "train",
          precision: str = "fp32") -> TrainResult:
    """Train ``model`` in place on ``data`` for ``cfg.steps`` steps, on the device its weights are on.

    ``ema_init`` is the upstream EMA state, used only when ``cfg.ema.init == "continue"``; with
    ``init == "fresh"`` the EMA starts from the weights ``model`` has now. ``precision``: the forward pass's
    arithmetic (``config.PRECISIONS``).
    """
    return train_many([Member(model, data, cfg.seed, ema_init)], cfg, diffusion, progress=progress, desc=desc,
                      precision=precision)[0]


def train_many(members: list[Member], cfg: TrainConfig, diffusion: DiffusionConfig, *, progress: bool = False,
               desc: str = "train", precision: str = "fp32") -> list[TrainResult]:
    """Train each member's model in place with recipe ``cfg`` (its own seed and data), all in one loop.

    Member k draws its batches, timesteps and noise from its own generator seeded ``members[k].seed``
    in the same order as a lone ``train``, so it ends where a lone run ends (up to float rounding).
    More than one member needs architecture-equal models on one device and runs them stacked.
    ``precision`` applies to the forward pass only (``compute_precision``).
    """
    for member in members:
        if cfg.ema.init == "continue" and cfg.ema.decay > 0 and member.ema_init is None:
            raise ValueError("ema.init=continue needs the upstream model's EMA weights; the loaded model has none "
                             "(train upstream with ema.decay > 0, or use ema.init=fresh)")
    device = next(members[0].model.parameters()).device
    trainee = _Single(members[0].model) if len(members) == 1 else _Stacked([m.model for m in members])
    generators = [torch.Generator().manual_seed(m.seed) for m in members]
    batches = [_batches(len(m.data), cfg.batch_size, g) for m, g in zip(members, generators, strict=True)]
    images = [m.data.images.to(device) for m in members]
    scheduler = ddpm_scheduler(diffusion)
    steps = scheduler.config.num_train_timesteps
    optimizer = make_optimizer(trainee.params, cfg.optimizer, cfg.lr, cfg.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    ema = _init_ema(trainee.state(), cfg, members)
    losses: list[list[float]] = [[] for _ in members]
    for m in members:
        m.model.train()
    for _ in tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False):
        x0, t, noise = [], [], []
        # each member draws in the order of a lone run: batch indices, timesteps, noise
        for source, batch, generator in zip(images, batches, generators, strict=True):
            index = next(batch)
            t.append(_antithetic_timesteps(cfg.batch_size, steps, generator))
            noise.append(torch.randn((cfg.batch_size, *source.shape[1:]), generator=generator))
            x0.append(source[index.to(device)])
        x0, t, noise = torch.stack(x0), torch.stack(t).to(device), torch.stack(noise).to(device)
        x_t = scheduler.add_noise(x0.flatten(0, 1), noise.flatten(0, 1), t.flatten()).view_as(x0)
        with compute_precision(precision, device):
            loss = trainee.losses(x_t, t, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        if cfg.grad_clip > 0:
            trainee.clip(cfg.grad_clip)
        optimizer.step()
        lr_schedule.step()
        if ema is not None:
            _update_ema(ema, trainee.state(), cfg.ema.decay)
        for k, value in enumerate(loss.detach().cpu().tolist()):
            losses[k].append(value)
    for m in members:
        m.model.eval()
    return trainee.results(ema, losses)


def _init_ema(state: dict[str, torch.Tensor], cfg: TrainConfig, members: list[Member]):
    """The EMA weights at step 0, shaped like ``state`` (stacked when several members train)."""
    if cfg.ema.decay == 0:
        return None
    if cfg.ema.init == "fresh":
        return {k: v.detach().clone() for k, v in state.items()}
    if len(members) == 1:
        return {k: v.detach().clone() for k, v in members[0].ema_init.items()}
    return {k: torch.stack([m.ema_init[k] for m in members]).to(state[k].device) for k in state}


@torch.no_grad()
def _update_ema(ema: dict[str, torch.Tensor], state: dict[str, torch.Tensor], decay: float) -> None:
    """ema <- ema + (1 - decay) * (state - ema) for floating tensors (one foreach call), copies for the rest."""
    floating = [name for name, value in state.items() if value.is_floating_point()]
    torch._foreach_lerp_([ema[name] for name in floating], [state[name].detach() for name in floating], 1.0 - decay)
    for name, value in state.items():
        if not value.is_floating_point():
            ema[name].copy_(value)


def sampling_state(result: TrainResult, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights this stage's images (and downstream stages) use: EMA if configured, else raw."""
    if cfg.ema.sample_with_ema:
        return result.ema
    return {k: v.detach().clone() for k, v in result.model.state_dict().items()}
