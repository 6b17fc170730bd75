"""The stage chain is one table (config.STAGE_CHAIN) that every other place reads."""

from pathlib import Path

import yaml

from shapflow.config import STAGE_CHAIN, STAGE_ORDER, STAGES, load_use_case
from shapflow.tracking.stage_runs import UPSTREAM
from shapflow.utility.protocol import stage_recipe

ROOT = Path(__file__).resolve().parents[2]


def test_the_chain_is_full_prune_finetune_each_after_the_one_before():
    assert STAGE_ORDER == ("full", "prune", "finetune")
    assert [stage.upstream for stage in STAGE_CHAIN] == [None, *STAGE_ORDER[:-1]]
    assert UPSTREAM == {"prune": "full", "finetune": "prune"}


def test_every_stage_has_an_identity_an_entry_point_and_its_recipe():
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    cfg = load_use_case("digits")
    for stage in STAGE_CHAIN:
        assert stage.name in STAGES and stage.entry_point in entry_points
        recipe = stage_recipe(cfg, stage.name)
        assert recipe is (None if stage.recipe is None else getattr(cfg, stage.recipe))
        assert stage.recipe is None or stage.recipe in STAGES[stage.name]  # its recipe is part of its identity
