"""LoRA rank pruning: keep a target FRACTION OF LoRA PARAMETERS (not "a pruning ratio").

The reference code's ``pruning_ratio`` meant removed channels for UNets but KEPT parameters for
LoRA; here the argument is ``lora_param_fraction_kept`` (0.5 = half the LoRA parameters stay).
Each LoRA pair A (in -> r) and B (r -> out) is one Torch-Pruning dependency group (A's output
channels = B's input channels = the rank); ``GroupMagnitudeImportance`` with a product reduction
scores rank k by ||A[k]||^2 ||B[:, k]||^2, the squared Frobenius norm of that rank's update
B[:, k] A[k], and each layer keeps its best round(r * fraction) ranks. A rank
costs in + out parameters in its layer, so the same fraction per layer keeps that fraction of all
LoRA parameters. The scale alpha / r is preserved (alpha is rewritten with r), and the new rank
and alpha are written into the PEFT config, so ``save_lora``/``load_lora`` reload the pruned adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from peft.tuners.lora import LoraLayer
from torch import nn

__all__ = ["LoraPruneReport", "lora_rank_importance", "prune_lora_ranks"]


@dataclass(frozen=True)
class LoraPruneReport:
    """Ranks and LoRA parameter counts before and after pruning."""

    rank_before: int
    rank_after: int
    lora_params_before: int
    lora_params_after: int

    def as_dict(self) -> dict[str, float]:
        return {"lora_rank_before": self.rank_before, "lora_rank_after": self.rank_after,
                "lora_params_before": self.lora_params_before, "lora_params_after": self.lora_params_after,
                "lora_param_fraction_kept": self.lora_params_after / self.lora_params_before}


def _importance(name: str) -> tp.importance.Importance:
    if name != "magnitude":
        raise ValueError(f"importance={name!r} is invalid: LoRA rank pruning supports magnitude")
    # prod of squared norms = ||B[:, k]||^2 ||A[k]||^2 = ||B[:, k] A[k]||_F^2: the size of rank k's update
    return tp.importance.GroupMagnitudeImportance(p=2, group_reduction="prod", normalizer=None)


def _rank_group(lora_a: nn.Linear, lora_b: nn.Linear, idxs: list[int]) -> tp.dependency.Group:
    """The Torch-Pruning group of ranks ``idxs`` of one LoRA pair (A's outputs coupled to B's inputs)."""
    example = torch.zeros(2, lora_a.in_features, device=lora_a.weight.device, dtype=lora_a.weight.dtype)
    trainable = [(p, p.requires_grad) for p in (lora_a.weight, lora_b.weight)]
    try:  # Torch-Pruning traces the weights' autograd graph: they must require grad while it does
        for weight, _ in trainable:
            weight.requires_grad_(True)
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(nn.Sequential(lora_a, lora_b), example_inputs=example)
    finally:
        for weight, flag in trainable:
            weight.requires_grad_(flag)
    return graph.get_pruning_group(lora_a, tp.prune_linear_out_channels, idxs=idxs)


def lora_rank_importance(lora_a: nn.Linear, lora_b: nn.Linear, importance: str = "magnitude") -> torch.Tensor:
    """Importance (r,) of every rank of the LoRA pair (A: in -> r, B: r -> out)."""
    group = _rank_group(lora_a, lora_b, list(range(lora_a.out_features)))
    return _importance(importance)(group).detach()


def _lora_layers(model: nn.Module, adapter: str) -> list[tuple[str, LoraLayer]]:
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer) and adapter in m.lora_A]
    if not layers:
        raise ValueError(f"the model has no LoRA layers of adapter {adapter!r}: add one with shapflow.models.sd_lora")
    return layers


def _count(layers: list[tuple[str, LoraLayer]], adapter: str) -> int:
    return sum(layer.lora_A[adapter].weight.numel() + layer.lora_B[adapter].weight.numel() for _, layer in layers)


def prune_lora_ranks(model: nn.Module, lora_param_fraction_kept: float, *, adapter: str = "default",
                     importance: str = "magnitude") -> LoraPruneReport:
    """Prune every LoRA layer of ``model`` (e.g. a UNet with a PEFT adapter) in place to the given fraction
    of its LoRA parameters; update the layers' ranks and the PEFT config. Returns a report."""
    if not 0.0 < lora_param_fraction_kept <= 1.0:
        raise ValueError(f"lora_param_fraction_kept={lora_param_fraction_kept} is invalid: "
                         "give the fraction of LoRA parameters to KEEP, in (0, 1]")
    config = model.peft_config[adapter]
    if config.rank_pattern or config.alpha_pattern or config.use_rslora:
        raise ValueError("only adapters with one rank and alpha for every layer (no rank_pattern, alpha_pattern "
                         "or rslora) can be rank-pruned")
    layers = _lora_layers(model, adapter)
    rank = config.r
    keep = max(1, round(rank * lora_param_fraction_kept))
    before = _count(layers, adapter)
    for _, layer in layers:
        lora_a, lora_b = layer.lora_A[adapter], layer.lora_B[adapter]
        order = torch.argsort(lora_rank_importance(lora_a, lora_b, importance), descending=True)
        removed = sorted(order[keep:].tolist())
        if removed:
            _rank_group(lora_a, lora_b, removed).prune()
        layer.r[adapter] = keep
        layer.lora_alpha[adapter] = layer.scaling[adapter] * keep  # alpha / r unchanged: same function
    config.r, config.lora_alpha = keep, float(config.lora_alpha) * keep / rank
    return LoraPruneReport(rank, keep, before, _count(layers, adapter))
