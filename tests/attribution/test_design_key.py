"""A finished study is found by its design (coalition config, estimator, budget, seed) through one tag."""

from dataclasses import replace

from shapflow.attribution import parse_request
from shapflow.testing.fast import FAST_SETTINGS


def test_the_design_key_changes_with_each_part_of_the_design_and_nothing_else():
    request = parse_request("digits-classes", overrides=FAST_SETTINGS, budget=10, workers=1)
    same = replace(request, workers=2, alias="candidate", check=4)  # how it runs, not what it evaluates
    assert same.design_key == request.design_key
    sft = replace(request.cfg.sft, steps=request.cfg.sft.steps + 1)
    for changed in (replace(request, seed=1), replace(request, budget=12), replace(request, method="leverage"),
                    replace(request, cfg=replace(request.cfg, sft=sft))):
        assert changed.design_key != request.design_key
