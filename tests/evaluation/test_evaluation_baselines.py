"""Similarity, own-property and degradation baselines on tiny hand-built markets."""

import numpy as np
import pytest
import torch

from shapflow.data import ContributorDataset
from shapflow.evaluation.baselines import (
    BASELINE_NAMES,
    contributor_baselines,
    degradation_values,
    own_property_values,
    per_contributor,
    pixel_embedding,
    scorer_embedding,
    scorer_probabilities,
    similarity_baselines,
    similarity_values,
)


def _market(info=()):
    """Contributor 0 holds the generated images themselves, 1 their negatives, 2 and 3 unrelated noise."""
    gen = torch.Generator().manual_seed(0)
    generated = torch.rand(5, 1, 4, 4, generator=gen) * 2 - 1
    noise = torch.rand(5, 1, 4, 4, generator=gen) * 2 - 1
    images = torch.cat([generated, -generated[:3], noise])
    owner = torch.tensor([0] * 5 + [1] * 3 + [2] * 4 + [3])
    return ContributorDataset(images, owner, ("same", "negated", "noise", "one-noise"), info), generated


def _linear_embed(images: torch.Tensor) -> np.ndarray:
    weights = torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return (images.reshape(len(images), -1).double() @ weights).numpy()


class _StubScorer:
    """A property without a classifier: the mean pixel value, lower is better."""

    name = "mean_pixel"
    higher_is_better = False

    def score(self, images: torch.Tensor) -> float:
        return float(images.mean())

    def score_all(self, images: torch.Tensor) -> dict[str, float]:
        return {self.name: self.score(images)}

    def utility(self, value: float) -> float:
        return -value


class _Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        self.fc = torch.nn.Linear(3, 4)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


class _ClassifierScorer(_StubScorer):
    classifier = _Classifier()


def test_per_contributor_mean_max_sum():
    data, _ = _market()
    values = np.arange(len(data), dtype=float)
    np.testing.assert_allclose(per_contributor(values, data, "mean"), [2.0, 6.0, 9.5, 12.0])
    np.testing.assert_allclose(per_contributor(values, data, "max"), [4.0, 7.0, 11.0, 12.0])
    np.testing.assert_allclose(per_contributor(values, data, "sum"), [10.0, 18.0, 38.0, 12.0])
    with pytest.raises(ValueError, match="reduce"):
        per_contributor(values, data, "median")
    with pytest.raises(ValueError, match="one entry per image"):
        per_contributor(values[:-1], data, "mean")


@pytest.mark.parametrize("space", ["pixel", "feature"])
def test_contributor_holding_the_generated_images_ranks_first(space):
    data, generated = _market()
    embed = _linear_embed if space == "feature" else None
    mean = similarity_values(data, generated, space=space, reduce="mean", embed=embed)
    top = similarity_values(data, generated, space=space, reduce="max", embed=embed)
    assert mean.shape == top.shape == (4,)
    assert np.argmax(mean) == 0 and np.argmin(mean) == 1  # the negated images are anti-similar
    assert (top >= mean - 1e-12).all()
    assert top[3] == pytest.approx(mean[3])  # one image: max == mean
    assert top[0] > mean[0]


def test_similarity_is_mean_cosine_over_the_generated_set():
    data, generated = _market()
    flat, gen = data.images.reshape(len(data), -1).double(), generated.reshape(len(generated), -1).double()
    cosine = torch.nn.functional.cosine_similarity(flat[:, None], gen[None], dim=2).mean(1).numpy()
    np.testing.assert_allclose(similarity_values(data, generated, reduce="max"),
                               per_contributor(cosine, data, "max"), rtol=1e-10)


def test_similarity_rejects_missing_or_dropped_options():
    data, generated = _market()
    with pytest.raises(ValueError, match="needs embed"):
        similarity_values(data, generated, space="feature")
    with pytest.raises(ValueError, match="takes no embed"):
        similarity_values(data, generated, space="pixel", embed=_linear_embed)
    with pytest.raises(ValueError, match="space"):
        similarity_values(data, generated, space="clip")
    with pytest.raises(ValueError, match="generated must be"):
        similarity_values(data, generated[:, :, :2])


def test_similarity_baselines_names_and_feature_fallback():
    data, generated = _market()
    rows = similarity_baselines(data, generated, scorer_embedding(_StubScorer()))
    assert list(rows) == ["pixel-sim-mean", "pixel-sim-max", "feature-sim-mean", "feature-sim-max"]
    # Without a classifier the feature space falls back to pixels.
    np.testing.assert_allclose(rows["feature-sim-mean"], rows["pixel-sim-mean"])
    assert scorer_embedding(_StubScorer()) is pixel_embedding
    features = scorer_embedding(_ClassifierScorer())(data.images)
    assert features.shape == (len(data), 3)


def test_own_property_scores_each_contributor_as_a_generated_set():
    data, _ = _market()
    rows = own_property_values(data, _StubScorer())
    assert list(rows) == ["own-property"]  # no classifier: no confidence row
    expected = [-float(data.images[data.contributor == c].mean()) for c in range(4)]
    np.testing.assert_allclose(rows["own-property"], expected, rtol=1e-6)

    scorer = _ClassifierScorer()
    rows = own_property_values(data, scorer)
    probs = scorer_probabilities(scorer, data.images)
    assert probs.shape == (len(data), 4)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    np.testing.assert_allclose(rows["own-confidence"], per_contributor(probs.max(1), data, "mean"))
    assert scorer_probabilities(_StubScorer(), data.images) is None


def test_degradation_level_and_clear_errors():
    info = tuple({"degradation": level} for level in (0.0, 0.8, 0.3, 0.0))
    data, _ = _market(info)
    np.testing.assert_array_equal(degradation_values(data), [0.0, -0.8, -0.3, 0.0])
    with pytest.raises(ValueError, match="info is empty"):
        degradation_values(_market()[0])
    partial = ({"degradation": 0.0}, {"recipe": "noise"}, {"degradation": 0.1}, {"recipe": "x"})
    with pytest.raises(ValueError, match="negated, one-noise"):
        degradation_values(_market(partial)[0])


def test_contributor_baselines_collects_every_row_in_order():
    info = tuple({"degradation": level} for level in (0.0, 0.8, 0.3, 0.0))
    data, generated = _market(info)
    rows = contributor_baselines(data, generated, _ClassifierScorer())
    assert tuple(rows) == BASELINE_NAMES
    assert all(row.shape == (4,) and np.isfinite(row).all() for row in rows.values())
    assert "degradation-level" not in contributor_baselines(_market()[0], generated, _StubScorer())
