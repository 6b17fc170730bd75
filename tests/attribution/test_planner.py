"""The planner: the cost it knows (the store's runs, else the paper's), the coalitions a budget buys per sFT steps
and the precision the measured trade-off expects there; exit 2 for a use case with no cost known."""

import json

import pytest
from click.testing import CliRunner

from shapflow.attribution.planner import TRADEOFF_FORMAT, Cost, known_cost, load_tradeoff, plan_budget
from shapflow.cli.main import main
from shapflow.config import load_use_case
from shapflow.testing.fast import FAST_SETTINGS


@pytest.fixture
def tradeoff(tmp_path):
    """A trade-off file shaped like benchmarks/sft_tradeoff.py's (test numbers, not a measurement): half the cost
    at the reference steps is fixed; more coalitions separate more pairs."""
    def curve(scale):
        return [{"coalitions": m, "pairs_separated": scale * m / 160, "mean_std_rel": 0.1 * (16 / m) ** 0.5,
                 "lds": 50 + scale * m / 4} for m in (16, 32, 64, 160)]
    rows = [{"sft_steps": s, "coalitions": 160, "curve": curve(k)} for s, k in ((50, 0.6), (100, 1.0), (200, 0.8))]
    payload = {"format": TRADEOFF_FORMAT, "use_case": "digits", "n": 16, "created": "2026-12-08",
               "command": "test", "reference": {"sft_steps": 100, "coalitions": 48},
               "cost_model": {"seconds_fixed": 5.0, "seconds_per_step": 0.05}, "rows": rows}
    path = tmp_path / "tradeoff.json"
    path.write_text(json.dumps(payload))
    return path


def test_budget_buys_coalitions_per_steps_and_expected_precision(tradeoff):
    curves = load_tradeoff(tradeoff)
    assert curves.fixed_share == pytest.approx(0.5) and sorted(curves.curves) == [0.5, 1.0, 2.0]
    cost = Cost(635.0, 200, "paper")
    rows = plan_budget(258, cost, 100 * 3600.0, curves)
    assert [r.sft_steps for r in rows] == [100, 200, 400]
    assert rows[1].coalitions == 566  # 360,000 s / 635 s, whole pairs
    assert rows[0].seconds_per_coalition == pytest.approx(635 * 0.75)  # half fixed, half per step
    assert rows[0].coalitions > rows[1].coalitions > rows[2].coalitions
    per_n = 566 / 258  # 2.19 coalitions per contributor = 35 on the 16-contributor curve
    assert rows[1].pairs_separated == pytest.approx(per_n * 16 / 160, rel=1e-6) and rows[1].measured


def test_plan_cli_for_artworks_uses_the_paper_cost(tmp_path, monkeypatch, tradeoff):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")  # a store with no artworks runs
    result = CliRunner().invoke(main, ["plan", "--use-case", "artworks", "--gpu-hours", "100", "--tradeoff",
                                       str(tradeoff), "--target", "pairs-separated=0.44"])
    assert result.exit_code == 0, result.output
    assert "n = 258" in result.output and "635 GPU-seconds" in result.output
    assert "recommended: --overrides sft.steps=200 --budget 566" in result.output
    assert "hours to reach pairs-separated=0.44" in result.output


@pytest.mark.parametrize(("args", "says"), [
    (["--use-case", "cifar20", "--gpu-hours", "10"], "no cost per coalition is known for use case cifar20"),
    (["--use-case", "artworks", "--gpu-hours", "-1"], "gpu-hours=-1.0 is invalid"),
    (["--use-case", "artworks"], "give --gpu-hours"),
    (["--use-case", "artworks", "--target", "top-k-stable=5"], "the planner knows pairs-separated and mean-std"),
    (["--use-case", "artworks", "--target", "pairs-separated=2"], "share of contributor pairs")])
def test_plan_bad_input_exits_2(tmp_path, monkeypatch, tradeoff, args, says):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    result = CliRunner().invoke(main, ["plan", *args, "--tradeoff", str(tradeoff)])
    assert result.exit_code == 2 and says in result.output


def test_cost_measured_in_the_store_wins(tiny_store):
    uri, _, request = tiny_store
    cost = known_cost(request.cfg, uri)
    assert cost is not None and cost.source.startswith("measured: the mean of 1") and cost.seconds > 0
    assert cost.sft_steps == request.cfg.sft.steps
    assert known_cost(load_use_case("digits-classes", [*FAST_SETTINGS, "sft.steps=7"]), uri) is None
