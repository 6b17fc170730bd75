import pytest
import torch

from shapflow.config import PropertyConfig
from shapflow.data import digits_reference_images
from shapflow.properties import load_property


@pytest.fixture(scope="module")
def scorer():
    return load_property(PropertyConfig(classifier_steps=300))


def test_classifier_is_accurate_and_cached(scorer):
    assert scorer.heldout_accuracy > 0.9
    again = load_property(PropertyConfig(classifier_steps=300))
    assert again.heldout_accuracy == scorer.heldout_accuracy


def test_real_digits_beat_noise_on_every_property(scorer):
    real = scorer.score_all(digits_reference_images()[:400])
    noise = scorer.score_all(torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert real["inception_score"] > noise["inception_score"]
    assert real["frechet_distance"] < noise["frechet_distance"]
    assert real["neg_log_fd"] > noise["neg_log_fd"]
    assert real["class_entropy"] > 3.2  # ~log2(10) for balanced real digits


def test_utility_sign_follows_direction():
    fd = load_property(PropertyConfig(name="frechet_distance", classifier_steps=300))
    assert not fd.higher_is_better and fd.utility(3.0) == -3.0


def test_every_configurable_property_has_a_scorer():
    """config.PROPERTY_NAMES (what a use case may name) is exactly what properties can load."""
    from shapflow.config.usecase import PROPERTY_NAMES
    from shapflow.properties import FEATURE_PROPERTIES, PROPERTIES

    assert set(PROPERTY_NAMES) == set(PROPERTIES) | set(FEATURE_PROPERTIES)
    assert not set(PROPERTIES) & set(FEATURE_PROPERTIES)


@pytest.mark.parametrize("name", ["neg_log_fd", "frechet_distance", "inception_score", "class_entropy"])
def test_each_digits_property_scores_under_its_own_name(name):
    prop = load_property(PropertyConfig(name=name, classifier_steps=300))
    scores = prop.score_all(digits_reference_images()[:64])
    assert prop.name == name and name in scores and prop.score(digits_reference_images()[:64]) == scores[name]
    assert prop.utility(scores[name]) == (scores[name] if prop.higher_is_better else -scores[name])
