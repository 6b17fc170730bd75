"""The results table, its CSV / markdown files, the LDS scatter plots and the JSON summary."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shapflow.evaluation.tables import results_frame, scatter_plots, to_markdown, write_json, write_tables
from shapflow.shapley.lds import lds, random_floor, relative_change, size_only


@pytest.fixture
def evaluation():
    """Additive game (n = 10) on 40 coalitions of varied size, 3 seeds: oracle, noisy, reversed methods."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=10) + 0.5
    masks = np.zeros((40, 10), dtype=bool)
    for row in masks:
        row[rng.choice(10, int(rng.integers(2, 9)), replace=False)] = True
    truth = masks @ values + 0.3 * rng.normal(size=(3, 40))
    methods = {"oracle": values, "noisy | sFT": values + rng.normal(size=10), "reversed": -values}
    results = [lds(v, masks, truth, method=name, n_boot=200) for name, v in methods.items()]
    floor = random_floor(masks, truth, draws=300)
    return methods, masks, truth, results, floor, size_only(masks, truth, n_boot=200)


def test_frame_has_reference_rows_and_is_sorted(evaluation):
    _, _, _, results, floor, size = evaluation
    cf = {"oracle": {"remove_top40": relative_change(np.array([10.0, 10.0]), np.array([8.0, 7.0]))}}
    frame = results_frame(results, floor, size, counterfactual=cf, extra={"oracle": {"degradation_rho": 0.9}})
    assert set(frame["method"]) == {"oracle", "noisy | sFT", "reversed", "random", "size-only"}
    lds_column = frame["lds"].to_numpy()
    assert np.all(np.diff(lds_column[np.isfinite(lds_column)]) <= 0) and frame["method"].iloc[0] == "oracle"
    random_row = frame.set_index("method").loc["random"]
    assert random_row["lds"] == floor.mean and random_row["ci"] == floor.half_width
    assert (random_row["boot_low"], random_row["boot_high"]) == (floor.low, floor.high)
    oracle = frame.set_index("method").loc["oracle"]
    assert oracle["remove_top40_change"] == pytest.approx(-25.0) and oracle["degradation_rho"] == 0.9
    assert bool(oracle["beats_floor"]) and not bool(frame.set_index("method").loc["reversed", "beats_floor"])
    assert pd.isna(random_row["beats_floor"]) and math.isnan(frame.set_index("method").loc["reversed",
                                                                                           "remove_top40_ci"])
    assert list(frame.columns)[-1] == "note"


def test_frame_without_size_variation_and_bad_inputs(evaluation):
    _, _, _, results, floor, _ = evaluation
    frame = results_frame(results, floor, None).set_index("method")
    assert math.isnan(frame.loc["size-only", "lds"]) and "one size" in frame.loc["size-only", "note"]
    with pytest.raises(ValueError, match="no LDS result"):
        results_frame(results, floor, None, extra={"typo": {"x": 1.0}})
    with pytest.raises(ValueError, match="unique"):
        results_frame([*results, results[0]], floor, None)
    with pytest.raises(ValueError, match="mean, ci"):
        results_frame(results, floor, None, counterfactual={"oracle": {"remove": (1.0, 2.0, 3.0)}})


def test_write_tables_round_trips(evaluation, tmp_path):
    _, _, _, results, floor, size = evaluation
    frame = results_frame(results, floor, size, extra={"reversed": {"degradation_rho": -0.5}})
    csv_path, md_path = write_tables(frame, tmp_path / "out")
    back = pd.read_csv(csv_path)
    assert list(back["method"]) == list(frame["method"])
    for column in ("lds", "ci", "boot_low", "boot_high", "degradation_rho"):
        np.testing.assert_allclose(back[column].to_numpy(float), frame[column].to_numpy(float), equal_nan=True)
    lines = md_path.read_text().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == list(frame.columns) and len(lines) == 2 + len(frame)
    for line, (_, row) in zip(lines[2:], frame.iterrows(), strict=True):
        cells = dict(zip(header, (c.strip() for c in line[1:-1].split(" | ")), strict=True))
        assert cells["method"].replace("\\|", "|") == row["method"]
        for column in ("lds", "ci", "boot_high"):
            expected = "n/a" if pd.isna(row[column]) else f"{row[column]:.2f}"
            assert cells[column] == expected
    assert "| n/a |" in to_markdown(results_frame(results, floor, None))


def test_scatter_plots_write_pngs(evaluation, tmp_path):
    methods, masks, truth, _, _, _ = evaluation
    truth = truth.copy()
    truth[:, 0] = np.nan  # a coalition with no run at all is left out of the plot
    predictions = {name: masks @ v for name, v in methods.items()} | {"noisy / sFT": masks @ methods["oracle"]}
    paths = scatter_plots(predictions, truth, tmp_path / "plots", sizes=masks.sum(axis=1))
    assert len(paths) == len(predictions) + 1 and paths[-1].name == "lds_scatter_all.png"
    assert len({p.name for p in paths}) == len(paths)  # "noisy | sFT" and "noisy / sFT" get distinct files
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 2000
    with pytest.raises(ValueError, match="sizes"):
        scatter_plots(predictions, truth, tmp_path, sizes=np.ones(3))


def test_write_json_schema(evaluation, tmp_path):
    _, masks, truth, results, floor, size = evaluation
    one_seed = lds(np.ones(10) + np.arange(10), masks, truth[0], method="one-seed", n_boot=0)
    path = write_json(tmp_path / "lds.json", [*results, one_seed], floor, size)

    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")

    data = json.loads(path.read_text(), parse_constant=reject)
    assert set(data) == {"oracle", "noisy | sFT", "reversed", "one-seed", "random", "size-only"}
    assert all(set(entry) == {"lds", "ci"} for entry in data.values())
    assert data["random"] == {"lds": pytest.approx(floor.mean), "ci": pytest.approx(floor.half_width)}
    assert data["oracle"] == {"lds": pytest.approx(results[0].mean), "ci": pytest.approx(results[0].ci)}
    assert data["one-seed"]["ci"] is None and isinstance(data["one-seed"]["lds"], float)
    assert "size-only" not in json.loads(write_json(tmp_path / "b.json", results, floor).read_text())


def test_no_torch_or_mlflow_imported():
    root = Path(__file__).resolve().parents[2] / "shapflow"
    code = (  # load these two modules alone: the packages above them may import torch for other stages
        "import sys, types\n"
        "for name, path in (('shapflow', sys.argv[1]), ('shapflow.evaluation', sys.argv[1] + '/evaluation')):\n"
        "    sys.modules[name] = types.ModuleType(name); sys.modules[name].__path__ = [path]\n"
        "import shapflow.shapley.lds, shapflow.evaluation.tables\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'mlflow')]; print(bad); assert not bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
