"""The one training loop (full training, retraining, pruned fine-tune, sFT, FT) and the two pruners."""

from shapflow.training.loop import (
    Member,
    TrainResult,
    ddpm_scheduler,
    diffusion_loss,
    make_optimizer,
    sampling_state,
    train,
    train_many,
)
from shapflow.training.prune import PruneReport, prune_unet
from shapflow.training.prune_lora import LoraPruneReport, lora_rank_importance, prune_lora_ranks

__all__ = [
    "LoraPruneReport",
    "Member",
    "PruneReport",
    "TrainResult",
    "ddpm_scheduler",
    "diffusion_loss",
    "lora_rank_importance",
    "make_optimizer",
    "prune_lora_ranks",
    "prune_unet",
    "sampling_state",
    "train",
    "train_many",
]
