"""TRAK (Park et al. 2023) and D-TRAK (Zheng et al. 2024) attribution for diffusion models, our own code.

1. For every example, the gradient of a scalar function f(theta; example) w.r.t. the model's
   parameters (torch.func: functional_call + vmap + grad), in example batches;
2. randomly projected to k dimensions: phi = g^T R / sqrt(k), R (P, k) Rademacher or Gaussian,
   generated block by block from the seed so no more than ``chunk`` rows of R ever exist at once;
3. score(train i, target j) = phi_j^T (Phi^T Phi + lambda I)^{-1} phi_i q_i, Phi (N_train, k) the
   training features and q_i an optional per-example weight (TRAK's Q; 1 for diffusion models).

For diffusion models f is, at a fixed set of timesteps with fixed seeded noise, the eps-MSE
training loss (``kind="trak"``) or the squared L2 norm of the model output eps_theta(x_t, t)
(``kind="dtrak"``, D-TRAK's choice), for training and generated images alike.

Sign convention: score > 0 means a gradient step on the training image moves the generated images'
f the same way it moves the image's own f; for ``trak`` that LOWERS the generated images' diffusion
loss (makes them more likely), so higher = more helpful, as in both papers. Defaults (k=512, 10
timesteps, 256-example batches) are sized for the digits model: ~160k parameters, ~2,300 images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers import UNet2DModel
from torch.func import functional_call, grad, vmap

from shapflow.config import DiffusionConfig
from shapflow.data import ContributorDataset
from shapflow.evaluation.baselines import per_contributor
from shapflow.training.loop import ddpm_scheduler

__all__ = [
    "KINDS",
    "PROJECTIONS",
    "diffusion_trak_scores",
    "diffusion_trak_values",
    "project_gradients",
    "random_project",
    "trak_baselines",
    "trak_scores",
]

KINDS = ("trak", "dtrak")
PROJECTIONS = ("rademacher", "gaussian")
BLOCK_ROWS = 1024  # rows of R drawn from one seed: R depends on (seed, k, projection), never on ``chunk``

ExampleFn = Callable[..., torch.Tensor]


def _generator(seed: int, *key: int) -> torch.Generator:
    """An independent torch generator per (seed, key): key (0, block) draws R's rows, (1, stream) noise."""
    state = np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _projection_rows(start: int, stop: int, proj_dim: int, seed: int, projection: str) -> torch.Tensor:
    """Rows [start, stop) of R (P, k) / sqrt(k); ``start`` is a multiple of BLOCK_ROWS."""
    pieces = []
    for block in range(start // BLOCK_ROWS, -(-stop // BLOCK_ROWS)):
        gen = _generator(seed, 0, block)  # rows [block * BLOCK_ROWS, (block + 1) * BLOCK_ROWS)
        rows = torch.randn(BLOCK_ROWS, proj_dim, generator=gen)
        # Signs of Gaussians are Rademacher; drawing them this way is ~10x faster than randint on CPU.
        pieces.append(rows if projection == "gaussian" else torch.where(rows >= 0, 1.0, -1.0))
    return torch.cat(pieces)[: stop - start] / proj_dim ** 0.5


def random_project(flat: torch.Tensor, proj_dim: int, *, seed: int = 0, projection: str = "gaussian",
                   chunk: int = 16384) -> torch.Tensor:
    """flat (B, P) -> flat @ R / sqrt(k), (B, k), with R (P, k) drawn from ``seed``.

    E[<u R, v R>] / k = <u, v> (Johnson-Lindenstrauss), so inner products, and hence the TRAK kernel,
    survive approximately. R is drawn in seeded blocks of BLOCK_ROWS rows and materialised ``chunk``
    rows at a time (rounded down to whole blocks, at least one): any chunk uses the same R (the
    float32 sums differ only in their order).
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection={projection!r} is invalid: use one of {', '.join(PROJECTIONS)}")
    if proj_dim < 1:
        raise ValueError(f"proj_dim={proj_dim} is invalid: use a positive dimension (or None for no projection)")
    step = max(BLOCK_ROWS, chunk // BLOCK_ROWS * BLOCK_ROWS)
    flat = flat.float()
    out = torch.zeros(flat.shape[0], proj_dim)
    for start in range(0, flat.shape[1], step):
        stop = min(start + step, flat.shape[1])
        out += flat[:, start:stop] @ _projection_rows(start, stop, proj_dim, seed, projection)
    return out


def project_gradients(model: torch.nn.Module, fn: ExampleFn, inputs: Sequence[torch.Tensor], *,
                      proj_dim: int | None, seed: int = 0, projection: str = "gaussian", chunk: int = 16384,
                      batch_size: int = 256) -> torch.Tensor:
    """Projected per-example gradients of ``fn``, (N, k) float32 (unprojected (N, P) when ``proj_dim`` is None).

    ``fn(forward, *example)`` returns a scalar for ONE example (each of ``inputs`` (N, ...) indexed
    along dim 0), where ``forward(*args)`` calls ``model`` with the parameters being differentiated.
    Gradients are taken w.r.t. the parameters that require grad (named_parameters order, flattened),
    in batches of ``batch_size`` examples; ``proj_dim=None`` returns them unprojected (exact TRAK).
    """
    if not inputs or any(x.shape[0] != inputs[0].shape[0] for x in inputs):
        raise ValueError("inputs must be a non-empty sequence of tensors with the same first dimension (N)")
    if proj_dim is not None and (projection not in PROJECTIONS or proj_dim < 1):
        raise ValueError(f"proj_dim={proj_dim}, projection={projection!r}: use proj_dim >= 1 (or None) and a "
                         f"projection in {', '.join(PROJECTIONS)}")
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no parameters that require grad: there is nothing to attribute through")
    frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def per_example(theta: dict[str, torch.Tensor], *example: torch.Tensor) -> torch.Tensor:
        def forward(*args: torch.Tensor):
            return functional_call(model, ({**theta, **frozen}, buffers), args)
        return fn(forward, *example)

    gradient = vmap(grad(per_example), in_dims=(None, *([0] * len(inputs))))
    features = []
    for start in range(0, inputs[0].shape[0], batch_size):
        grads = gradient(params, *(x[start: start + batch_size] for x in inputs))
        flat = torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)
        del grads
        features.append(flat if proj_dim is None else
                        random_project(flat, proj_dim, seed=seed, projection=projection, chunk=chunk))
    return torch.cat(features)


def trak_scores(train_features: torch.Tensor | np.ndarray, target_features: torch.Tensor | np.ndarray,
                lam: float = 0.1, *, train_weights: np.ndarray | None = None) -> np.ndarray:
    """score_i = mean_j phi_j^T (Phi^T Phi + lam' I)^{-1} phi_i q_i, (N_train,).

    train_features Phi (N_train, k), target_features (N_target, k), train_weights q (N_train,) (TRAK's
    Q; default 1). ``lam`` is RELATIVE: lam' = lam * trace(Phi^T Phi) / k, the mean diagonal of the
    kernel, so one value suits any scale of the features. One linear solve (float64), no inverse.
    """
    phi = np.asarray(train_features, dtype=np.float64)
    targets = np.asarray(target_features, dtype=np.float64)
    if phi.ndim != 2 or targets.ndim != 2 or phi.shape[1] != targets.shape[1]:
        raise ValueError(f"features must be (N_train, k) and (N_target, k), got {phi.shape} and {targets.shape}")
    if lam < 0:
        raise ValueError(f"lam={lam} is invalid: use lam >= 0 (relative to the kernel's mean diagonal)")
    kernel = phi.T @ phi
    kernel[np.diag_indices_from(kernel)] += lam * np.trace(kernel) / kernel.shape[0]
    # mean_j phi_j^T K^-1 phi_i = (K^-1 mean_j phi_j)^T phi_i: one solve for all targets.
    direction = np.linalg.solve(kernel, targets.mean(0))
    scores = phi @ direction
    if train_weights is not None:
        weights = np.asarray(train_weights, dtype=np.float64)
        if weights.shape != scores.shape:
            raise ValueError(f"train_weights must be (N_train,) = {scores.shape}, got shape {weights.shape}")
        scores = scores * weights
    return scores


def _timesteps(num_train_timesteps: int, count: int) -> torch.Tensor:
    """``count`` evenly spaced timesteps in [0, T): the midpoints of equal bins, (count,) int64."""
    if not 1 <= count <= num_train_timesteps:
        raise ValueError(f"timesteps={count} is invalid: use 1..{num_train_timesteps} (the schedule's length)")
    return ((torch.arange(count, dtype=torch.float64) + 0.5) * num_train_timesteps / count).long()


def _fixed_noise(n: int, count: int, shape: Sequence[int], seed: int, stream: int) -> torch.Tensor:
    """Seeded noise (n, count, *shape), one draw per example and timestep; ``stream`` separates image sets."""
    return torch.randn(n, count, *shape, generator=_generator(seed, 1, stream))


def _diffusion_fn(kind: str, t: torch.Tensor, alpha_bar: torch.Tensor) -> ExampleFn:
    """f(forward, x0 (C, H, W), noise (S, C, H, W)): the loss (trak) or ||eps_theta||^2 (dtrak), mean over t."""
    signal = alpha_bar[t].sqrt().float().view(-1, 1, 1, 1)
    spread = (1 - alpha_bar[t]).sqrt().float().view(-1, 1, 1, 1)

    def fn(forward: Callable[..., object], x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        eps = forward(signal * x0 + spread * noise, t).sample  # (S, C, H, W)
        if kind == "trak":
            return ((eps - noise) ** 2).mean()
        return (eps ** 2).sum() / len(t)

    return fn


def diffusion_trak_scores(model: UNet2DModel, diffusion_cfg: DiffusionConfig, train_images: torch.Tensor,
                          generated: torch.Tensor, *, kind: str = "trak", proj_dim: int = 512, timesteps: int = 10,
                          lam: float = 0.1, seed: int = 0, batch_size: int = 256,
                          projection: str = "gaussian") -> np.ndarray:
    """Per-training-image TRAK / D-TRAK scores, averaged over the generated images, (N_train,).

    train_images (N_train, C, H, W) and generated (N_gen, C, H, W) in [-1, 1]; ``model`` is the model
    that generated them. Both sets get ``timesteps`` fixed timesteps and their own seeded noise, so the
    scores are deterministic. Higher = more helpful to the generated set (module docstring: sign).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid: use one of {', '.join(KINDS)}")
    if generated.ndim != 4 or generated.shape[1:] != train_images.shape[1:]:
        raise ValueError(f"generated must be (N, {', '.join(map(str, train_images.shape[1:]))}) like the "
                         f"training images, got shape {tuple(generated.shape)}")
    steps = diffusion_cfg.num_train_timesteps
    t = _timesteps(steps, timesteps)
    fn = _diffusion_fn(kind, t, ddpm_scheduler(diffusion_cfg).alphas_cumprod)
    options = {"proj_dim": proj_dim, "seed": seed, "projection": projection, "batch_size": batch_size}
    features = []
    for stream, images in enumerate((train_images, generated)):
        noise = _fixed_noise(images.shape[0], timesteps, images.shape[1:], seed, stream)
        features.append(project_gradients(model, fn, (images.float(), noise), **options))
    return trak_scores(features[0], features[1], lam)


def diffusion_trak_values(model: UNet2DModel, diffusion_cfg: DiffusionConfig, data: ContributorDataset,
                          generated: torch.Tensor, *, kind: str = "trak", proj_dim: int = 512, timesteps: int = 10,
                          lam: float = 0.1, seed: int = 0, reduce: str = "mean", batch_size: int = 256,
                          projection: str = "gaussian") -> np.ndarray:
    """TRAK (``kind="trak"``) or D-TRAK (``"dtrak"``) value per contributor, (n_contributors,).

    Per-image scores (``diffusion_trak_scores``: averaged over the generated images (N_gen, C, H, W))
    aggregated by ``reduce`` (mean or sum) over each contributor's images; name rows ``{kind}-{reduce}``.
    """
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce={reduce!r} is invalid: use mean or sum")
    scores = diffusion_trak_scores(model, diffusion_cfg, data.images, generated, kind=kind, proj_dim=proj_dim,
                                   timesteps=timesteps, lam=lam, seed=seed, batch_size=batch_size,
                                   projection=projection)
    return per_contributor(scores, data, reduce)


def trak_baselines(model: UNet2DModel, diffusion_cfg: DiffusionConfig, data: ContributorDataset,
                   generated: torch.Tensor, *, reduces: Sequence[str] = ("mean",), proj_dim: int = 512,
                   timesteps: int = 10, lam: float = 0.1, seed: int = 0, batch_size: int = 256,
                   projection: str = "gaussian") -> dict[str, np.ndarray]:
    """{"trak-mean": ..., "dtrak-mean": ...} (one row per kind and reduce), each (n_contributors,).

    Per-image scores are computed once per kind and aggregated by every ``reduces`` entry.
    """
    for reduce in reduces:
        if reduce not in ("mean", "sum"):
            raise ValueError(f"reduce={reduce!r} is invalid: use mean or sum")
    rows = {}
    for kind in KINDS:
        scores = diffusion_trak_scores(model, diffusion_cfg, data.images, generated, kind=kind, proj_dim=proj_dim,
                                       timesteps=timesteps, lam=lam, seed=seed, batch_size=batch_size,
                                       projection=projection)
        rows.update({f"{kind}-{reduce}": per_contributor(scores, data, reduce) for reduce in reduces})
    return rows
