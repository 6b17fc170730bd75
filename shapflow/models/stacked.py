"""K architecture-equal UNets called as one: weights stacked on a leading member axis, the forward pass vmapped.

Shared by the stacked training loop (``training.train_many``) and the stacked DDIM sampler
(``generation.ddim.denoise_stacked``), so both run the K members through the same function: one kernel per
layer serves every member, which is what makes many small models stop being launch-bound.
"""

from __future__ import annotations

import copy

import torch

from shapflow.models.attention import vmap_safe_attention

__all__ = ["StackedModules"]


class StackedModules:
    """``models`` as one function of stacked weights: ``params`` and ``buffers`` map each name to a (K, ...)
    tensor; ``params`` are fresh leaves (``trainable``: they require grad). The function is a weightless
    (meta-device) copy of the first model, with vmap-safe attention; the models themselves are not touched."""

    def __init__(self, models: list[torch.nn.Module], *, trainable: bool = False) -> None:
        params, self.buffers = torch.func.stack_module_state(models)
        self.params = {name: value.detach().clone().requires_grad_(trainable) for name, value in params.items()}
        self.base = vmap_safe_attention(copy.deepcopy(models[0]).to("meta"))

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The predicted noise, (K, B, C, H, W), of member k on ``x[k]``: ``t`` is (K, B) timesteps, or one
        timestep (0-d) for every member and image, as the lone sampler passes it."""
        def one(params, buffers, x, steps):
            return torch.func.functional_call(self.base, (params, buffers), (x, steps)).sample

        t_dim = None if t.ndim == 0 else 0
        return torch.func.vmap(one, in_dims=(0, 0, 0, t_dim))(self.params, self.buffers, x, t)

    def state(self) -> dict[str, torch.Tensor]:
        """Every stacked tensor by name (parameters and buffers), as a state dict with a member axis."""
        return {**self.params, **self.buffers}
