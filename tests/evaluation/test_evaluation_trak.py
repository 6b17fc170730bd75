"""TRAK / D-TRAK: exact on a linear toy with a closed form, JL projection, diffusion features on a tiny UNet."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from shapflow.config import DiffusionConfig, ModelConfig
from shapflow.data import ContributorDataset
from shapflow.evaluation.trak import (
    BLOCK_ROWS,
    diffusion_trak_scores,
    diffusion_trak_values,
    project_gradients,
    random_project,
    trak_baselines,
    trak_scores,
)
from shapflow.models import build_unet


def test_projection_rows_are_independent_rademacher_signs():
    rows = torch.zeros(3, 2 * BLOCK_ROWS + 5)
    rows[0, 0], rows[1, 1], rows[2, BLOCK_ROWS] = 1.0, 1.0, 1.0  # rows of R from two seeded blocks
    projected = random_project(rows, 64, seed=0, projection="rademacher")
    torch.testing.assert_close(projected.abs(), torch.full((3, 64), 64 ** -0.5))
    assert (projected[0] != projected[1]).any() and (projected[0] != projected[2]).any()


def _linear_toy(n: int = 40, d: int = 5, lam: float = 0.05, seed: int = 0):
    """Ridge regression y = w^T x + b + noise, fitted exactly; returns (model, X, y, X_target, lam_abs)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=d) + 0.3 + rng.normal(scale=0.5, size=n)
    xa = np.hstack([x, np.ones((n, 1))])  # nn.Linear's parameters: weight (1, d) then bias
    gram = xa.T @ xa
    lam_abs = lam * np.trace(gram) / gram.shape[0]  # trak_scores' lam is relative to the mean diagonal
    theta = np.linalg.solve(gram + lam_abs * np.eye(d + 1), xa.T @ y)
    model = torch.nn.Linear(d, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(theta[:d])[None])
        model.bias.copy_(torch.tensor([theta[d]]))
    return model, x, y, rng.normal(size=(7, d)), lam_abs


def _refit_influence(x: np.ndarray, y: np.ndarray, x_target: np.ndarray, lam_abs: float, h: float = 1e-5):
    """Ground truth by refitting: d/d eps of the mean target prediction when point i's weight is 1 + eps."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    ta = np.hstack([x_target, np.ones((len(x_target), 1))])

    def fit(weights: np.ndarray) -> np.ndarray:
        return np.linalg.solve(xa.T @ (weights[:, None] * xa) + lam_abs * np.eye(xa.shape[1]), xa.T @ (weights * y))

    out = np.empty(len(x))
    for i in range(len(x)):
        up, down = np.ones(len(x)), np.ones(len(x))
        up[i], down[i] = 1 + h, 1 - h
        out[i] = (ta @ (fit(up) - fit(down))).mean() / (2 * h)
    return out


def _output(forward, x):
    return forward(x).squeeze()


def test_trak_equals_closed_form_influence_on_linear_regression():
    lam = 0.05
    model, x, y, x_target, lam_abs = _linear_toy(lam=lam)
    # TRAK: phi = gradient of the model output ([x, 1]), Q = the residual (out-to-loss gradient of 0.5 r^2).
    phi = project_gradients(model, _output, (torch.from_numpy(x),), proj_dim=None, batch_size=16)
    phi_target = project_gradients(model, _output, (torch.from_numpy(x_target),), proj_dim=None)
    assert phi.shape == (40, 6)
    with torch.no_grad():
        residual = y - model(torch.from_numpy(x)).squeeze().numpy()
    scores = trak_scores(phi, phi_target, lam, train_weights=residual)
    # Closed form: mean_t xa_t^T (Xa^T Xa + lam I)^-1 xa_i r_i, and the same by actually refitting.
    truth = _refit_influence(x, y, x_target, lam_abs)
    np.testing.assert_allclose(scores, truth, rtol=1e-5, atol=1e-8)
    assert spearmanr(scores, truth)[0] == pytest.approx(1.0)


def test_projected_trak_recovers_the_influence_ranking():
    model, x, y, x_target, lam_abs = _linear_toy(lam=1e-3)
    truth = _refit_influence(x, y, x_target, lam_abs)
    with torch.no_grad():
        residual = y - model(torch.from_numpy(x)).squeeze().numpy()
    options = {"proj_dim": 64, "seed": 3, "projection": "gaussian"}
    phi = project_gradients(model, _output, (torch.from_numpy(x),), **options)
    phi_target = project_gradients(model, _output, (torch.from_numpy(x_target),), **options)
    assert phi.shape == (40, 64)
    scores = trak_scores(phi, phi_target, 1e-3, train_weights=residual)
    assert spearmanr(scores, truth)[0] > 0.99
    np.testing.assert_allclose(scores, truth, rtol=0.05, atol=0.02 * np.abs(truth).max())


def test_trak_scores_solve_matches_per_target_inverse_and_is_scale_free():
    rng = np.random.default_rng(1)
    phi, targets, lam = rng.normal(size=(30, 4)), rng.normal(size=(5, 4)), 0.2
    kernel = phi.T @ phi
    inverse = np.linalg.inv(kernel + lam * np.trace(kernel) / 4 * np.eye(4))
    expected = np.mean([[t @ inverse @ p for p in phi] for t in targets], axis=0)
    np.testing.assert_allclose(trak_scores(phi, targets, lam), expected, rtol=1e-10)
    np.testing.assert_allclose(trak_scores(10 * phi, 10 * targets, lam), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="lam"):
        trak_scores(phi, targets, -1.0)
    with pytest.raises(ValueError, match="N_train"):
        trak_scores(phi, targets[:, :3], lam)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian"])
def test_random_projection_preserves_inner_products(projection):
    flat = torch.randn(6, 3000, generator=torch.Generator().manual_seed(0))
    projected = random_project(flat, 4096, seed=1, projection=projection).double()
    gram, approx = (flat.double() @ flat.double().T), projected @ projected.T
    norms = flat.double().norm(dim=1)
    assert ((approx - gram).abs() / torch.outer(norms, norms)).max() < 0.1  # JL: error ~ 1/sqrt(k)
    assert not torch.allclose(random_project(flat, 4096, seed=2, projection=projection).double(), projected)


def test_projection_is_deterministic_and_independent_of_chunk():
    flat = torch.randn(3, 2500, generator=torch.Generator().manual_seed(0))  # 2500: not whole blocks
    base = random_project(flat, 16, seed=5, chunk=1)
    # the same R whatever the chunk; the float32 sums of 2,500 products only differ in their order (a BLAS
    # blocks them differently on each CPU: up to ~1e-5 relative), while another R would differ by O(1)
    for chunk in (10**6, 2048):
        torch.testing.assert_close(random_project(flat, 16, seed=5, chunk=chunk), base, rtol=2e-5, atol=1e-4)
    assert torch.equal(random_project(flat, 16, seed=5, chunk=1), base)
    with pytest.raises(ValueError, match="projection"):
        random_project(flat, 16, projection="sparse")


def _tiny_market():
    cfg = ModelConfig(block_out_channels=(4, 8), norm_num_groups=2)
    model = build_unet(cfg, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 8, 8, generator=gen) * 2 - 1
    data = ContributorDataset(images, torch.tensor([0, 0, 1, 1, 2, 2]), ("a", "b", "c"))
    generated = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    return model, DiffusionConfig(num_train_timesteps=50), data, generated


@pytest.mark.parametrize("kind", ["trak", "dtrak"])
def test_diffusion_trak_values_on_a_tiny_unet(kind):
    model, diffusion, data, generated = _tiny_market()
    options = {"kind": kind, "proj_dim": 16, "timesteps": 3}
    values = diffusion_trak_values(model, diffusion, data, generated, **options)
    assert values.shape == (3,) and np.isfinite(values).all()
    assert np.abs(values).max() > 0
    np.testing.assert_array_equal(diffusion_trak_values(model, diffusion, data, generated, **options), values)
    # The fixed noise is drawn per image set, so batching does not change the features.
    np.testing.assert_allclose(diffusion_trak_values(model, diffusion, data, generated, batch_size=4, **options),
                               values, rtol=1e-4, atol=1e-6)
    scores = diffusion_trak_scores(model, diffusion, data.images, generated, **options)
    np.testing.assert_allclose(diffusion_trak_values(model, diffusion, data, generated, reduce="sum", **options),
                               scores.reshape(3, 2).sum(1), rtol=1e-12)


def test_trak_kinds_differ_and_bad_options_are_rejected():
    model, diffusion, data, generated = _tiny_market()
    rows = trak_baselines(model, diffusion, data, generated, reduces=("mean", "sum"), proj_dim=16, timesteps=3)
    assert list(rows) == ["trak-mean", "trak-sum", "dtrak-mean", "dtrak-sum"]
    assert not np.allclose(rows["trak-mean"], rows["dtrak-mean"])
    np.testing.assert_allclose(rows["trak-sum"], 2 * rows["trak-mean"], rtol=1e-12)
    with pytest.raises(ValueError, match="kind"):
        diffusion_trak_values(model, diffusion, data, generated, kind="tracin")
    with pytest.raises(ValueError, match="reduce"):
        diffusion_trak_values(model, diffusion, data, generated, reduce="max")
    with pytest.raises(ValueError, match="timesteps"):
        diffusion_trak_values(model, diffusion, data, generated, timesteps=51)
    with pytest.raises(ValueError, match="generated must be"):
        diffusion_trak_values(model, diffusion, data, generated[:, :, :4])
    with pytest.raises(ValueError, match="no parameters that require grad"):
        diffusion_trak_values(model.requires_grad_(False), diffusion, data, generated)
