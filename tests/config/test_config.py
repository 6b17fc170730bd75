import dataclasses
import json

import pytest

from shapflow.config import (
    ConfigError,
    TrainConfig,
    UseCaseConfig,
    apply_overrides,
    available_use_cases,
    from_dict,
    load_use_case,
    stage_key,
    to_dict,
)


def test_shipped_use_cases_load_and_validate():
    assert {"digits", "digits-classes"} <= set(available_use_cases())
    cfg = load_use_case("digits")
    assert cfg.name == "digits" and cfg.data.source == "digits-market"


def test_unknown_use_case_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown use case 'nope'.*digits"):
        load_use_case("nope")


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsft:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"sft\.stepz"):
        load_use_case(str(path))


def test_wrong_type_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sft:\n  steps: many\n")
    with pytest.raises(ConfigError, match="expected int"):
        load_use_case(str(path))


def test_invalid_value_names_field_and_fix():
    with pytest.raises(ConfigError, match=r"prune\.channel_fraction_removed=1\.5.*fraction of channels to remove"):
        from_dict(UseCaseConfig, {"prune": {"channel_fraction_removed": 1.5}})


def test_missing_manifest_path_is_rejected():
    with pytest.raises(ConfigError, match=r"data.path"):
        from_dict(UseCaseConfig, {"data": {"source": "manifest"}})


def test_overrides_apply_and_reject_unknown_keys():
    cfg = apply_overrides(UseCaseConfig(), ["sft.steps=7", "sampling.num_images=16", "sft.ema.decay=0.9"])
    assert cfg.sft.steps == 7 and cfg.sampling.num_images == 16 and cfg.sft.ema.decay == 0.9
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(UseCaseConfig(), ["sft.nope=1"])
    with pytest.raises(ConfigError, match=r"section.field=value"):
        apply_overrides(UseCaseConfig(), ["sft.steps"])


def test_json_round_trip_and_frozen():
    cfg = load_use_case("digits")
    again = from_dict(UseCaseConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sft.steps = 3  # type: ignore[misc]


def test_stage_keys_change_only_downstream():
    base = UseCaseConfig()
    changed = apply_overrides(base, ["sft.steps=50"])
    assert stage_key(base, "full") == stage_key(changed, "full")
    assert stage_key(base, "finetune") == stage_key(changed, "finetune")
    assert stage_key(base, "coalition") != stage_key(changed, "coalition")
    retrained = apply_overrides(base, ["train.steps=200"])
    assert stage_key(base, "full") != stage_key(retrained, "full")
    assert len(stage_key(base, "data")) == 64


def test_ema_sampling_without_ema_is_rejected():
    with pytest.raises(ConfigError, match=r"ema.decay > 0"):
        from_dict(TrainConfig, {"ema": {"sample_with_ema": True}})


def test_request_vocabulary_names_every_estimator_and_executor():
    """The command line offers ``shapflow.config.request``'s names without importing the library: they must be
    exactly the estimators and executors the library has."""
    from shapflow.config.request import EXECUTORS, METHOD_NAMES
    from shapflow.execution import dispatch
    from shapflow.shapley import METHODS

    assert sorted(METHOD_NAMES) == sorted(METHODS)
    assert dispatch.EXECUTORS == EXECUTORS
