import numpy as np
import pytest

from shapflow.config import UseCaseConfig, apply_overrides
from shapflow.utility.study import load_study

TINY = ["train.steps=300", "train.warmup_steps=5", "train.ema.decay=0.9", "finetune.steps=10",
        "finetune.warmup_steps=0", "sft.steps=5",
        "train.batch_size=32", "sft.batch_size=32", "finetune.batch_size=32", "sampling.num_images=128",
        "sampling.num_inference_steps=5", "property.classifier_steps=300"]


@pytest.fixture(scope="module")
def study():
    return load_study(apply_overrides(UseCaseConfig(), TINY))


def test_full_model_is_clearly_better_than_untrained(study):
    assert study.v1().utility > study.v0().utility + 0.5


def test_prune_report_and_cache_reuse(study):
    assert study.prune_report["params_after"] < study.prune_report["params_before"]
    again = load_study(study.cfg)  # loads both stages from the cache: identical weights
    for key, value in study.pruned.sample_state.items():
        assert (again.pruned.sample_state[key] == value).all()
    assert again.prune_report == study.prune_report


@pytest.mark.parametrize("method", ["sft", "ft", "retrain"])
def test_three_utility_variants_on_a_two_contributor_coalition(study, method):
    mask = np.zeros(study.data.n_contributors, bool)
    mask[[0, 4]] = True
    result = study.evaluate(mask, method=method)
    assert np.isfinite(result.utility)
    assert set(result.properties) == {"inception_score", "frechet_distance", "neg_log_fd", "class_entropy"}
    assert result.images.shape == (128, 1, 8, 8)
    assert result.timings["train_seconds"] > 0 and result.timings["sample_seconds"] > 0
    again = study.evaluate(mask, method=method)
    assert again.utility == result.utility  # deterministic: same coalition, same seed, same value
