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
