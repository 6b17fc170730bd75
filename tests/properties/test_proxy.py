"""One contract over every registered property's data proxy (as diffusers tests every scheduler).

q(S) = the property of coalition S's own real images, from per-image quantities: one row per image, one finite
value per coalition, batched calls equal one-by-one calls, and where the proxy is the property itself, q(S)
equals the property (in the utility's orientation) scored on S's images.
"""

import warnings

import numpy as np
import pytest
import torch

from shapflow.config import AssetsConfig, PropertyConfig
from shapflow.data import digits_reference_images
from shapflow.properties import FEATURE_PROPERTIES, PROPERTIES, load_property
from shapflow.properties.digit_scores import frechet_distance
from shapflow.properties.proxy import FrechetProxy, QuantileProxy
from shapflow.standins.tiny import tiny_images, write_tiny_clip_vision, write_tiny_inception, write_tiny_laion_head
from shapflow.utility import ProxyError, check_proxy

N_PLAYERS = 4
# Approximations by design: the Frechet proxies use diagonal covariances (benchmarks/proxy.py measured why).
APPROXIMATE = {"fid", "neg_log_fid", "neg_log_fd", "frechet_distance"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy-assets")
    return AssetsConfig(fid_inception=str(write_tiny_inception(root / "inception.pth")),
                        face_encoder=str(write_tiny_clip_vision(root / "face")),
                        clip_vit_l14=str(write_tiny_clip_vision(root / "clip")),
                        laion_aesthetic_head=str(write_tiny_laion_head(root / "head.pth")))


def _market(name: str) -> tuple[torch.Tensor, np.ndarray]:
    """Images and their owners: 8x8 digits for the digits properties, tiny RGB images for the others."""
    if name in PROPERTIES:
        images = digits_reference_images()[:120]
        return images, np.arange(len(images)) % N_PLAYERS
    data = tiny_images(N_PLAYERS, per_contributor=6, size=32)
    return data.images, data.contributor.numpy()


@pytest.mark.parametrize("name", sorted({*PROPERTIES, *FEATURE_PROPERTIES}))
def test_every_property_has_a_data_proxy(name, assets):
    images, owner = _market(name)
    cfg = PropertyConfig(name=name, n_clusters=4, inception_resize=75)
    scorer = load_property(cfg, assets, images if FEATURE_PROPERTIES.get(name) else None)
    quantities = scorer.image_quantities(images)
    assert quantities.ndim == 2 and len(quantities) == len(images)
    game = scorer.proxy_game(quantities, owner, N_PLAYERS)
    masks = np.array([[int(b) for b in np.binary_repr(k, N_PLAYERS)] for k in range(2**N_PLAYERS)], dtype=bool)
    q = np.asarray(game(masks), dtype=float)
    assert q.shape == (len(masks),) and np.isfinite(q).all()
    np.testing.assert_allclose(q, np.concatenate([game(m[None]) for m in masks]), rtol=1e-9, atol=1e-12)
    if name in APPROXIMATE:
        return
    for mask in masks[1:]:
        keep = torch.from_numpy(mask[owner])
        expected = scorer.utility(scorer.score_all(images[keep])[scorer.name])
        assert game(mask[None])[0] == pytest.approx(expected, rel=1e-5, abs=1e-6), (name, mask)


def test_frechet_proxy_diagonal_is_the_variance_only_distance():
    rng = np.random.default_rng(0)
    features, owner = rng.normal(size=(60, 3)) * [1.0, 2.0, 0.5], np.arange(60) % 3
    mu, sigma = np.zeros(3), np.diag([1.0, 1.0, 1.0])
    diagonal = FrechetProxy.of(features, owner, 3, mu, np.diag(sigma), neg_log=False)
    full = FrechetProxy.of(features, owner, 3, mu, sigma, neg_log=False)
    mask = np.ones((1, 3), bool)
    sd = features.std(0, ddof=1)
    assert -diagonal(mask)[0] == pytest.approx(np.sum(features.mean(0) ** 2) + np.sum((sd - 1.0) ** 2))
    assert full(mask)[0] == pytest.approx(diagonal(mask)[0], rel=0.05)  # nearly diagonal features
    x = features[owner != 1]
    exact = frechet_distance(x.mean(0), np.cov(x, rowvar=False), mu, sigma)
    assert -full(np.array([[True, False, True]]))[0] == pytest.approx(exact, rel=1e-6)


def test_quantile_proxy_matches_numpy_on_random_coalitions():
    rng = np.random.default_rng(1)
    scores, owner = rng.normal(size=200), rng.integers(0, 7, 200)
    game = QuantileProxy.of(scores, owner, 0.9)
    masks = rng.random((50, 7)) < 0.5
    masks[0] = False
    expected = [np.quantile(scores[m[owner]], 0.9) if m.any() else scores.min() for m in masks]
    np.testing.assert_allclose(game(masks), expected)


def test_check_proxy_rejects_wrong_length_and_nan_and_drops_a_constant_one():
    masks = np.random.default_rng(2).random((6, 4)) < 0.5
    with pytest.raises(ProxyError, match="one float per mask row"):
        check_proxy(lambda m: np.zeros(len(m) + 1), masks)
    with pytest.raises(ProxyError, match="NaN/inf"):
        check_proxy(lambda m: np.where(m.sum(1) == 0, np.nan, 1.0 * m.sum(1)), masks)
    with pytest.warns(UserWarning, match="constant"):
        assert check_proxy(lambda m: np.full(len(m), 3.0), masks) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = lambda m: m.sum(1).astype(float)  # noqa: E731
        assert check_proxy(good, masks) is good
