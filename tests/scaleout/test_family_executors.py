"""Every family with workers and Ray: tiny artworks (sd_lora) and celebahq (latent) coalitions evaluated in two
spawned worker processes and as Ray tasks give the utilities of one process (to 1e-6).

The stages are trained once per family, saved as stage folders (what a driver hands to its executors: PEFT
adapter folders for LoRA, safetensors + JSON for the latent UNet), and every executor loads its Study from them.
"""

import numpy as np
import pytest

from shapflow.attribution import load_config, parse_request
from shapflow.execution import ExecutorSpec, evaluate_many
from shapflow.utility import StageIO, folder_store, load_study, no_store

MASKS = {0: np.array([True, False, False]), 1: np.array([False, True, True])}  # one per worker


@pytest.fixture(scope="module", params=["artworks", "celebahq"])
def prepared(request, tmp_path_factory):
    """(study loaded from the stage folders, folders, utilities evaluated in this process)."""
    cfg = load_config(request.param, tiny=True)
    trained = load_study(cfg, store=no_store)
    root = tmp_path_factory.mktemp(request.param)
    io = StageIO(cfg, trained.family, trained.ctx)
    folders = {}
    for stage, models in trained.stages.items():
        io.save(models, {"prune_report": trained.prune_report} if stage != "full" else {}, root / stage, stage)
        folders[stage] = str(root / stage)
    study = load_study(cfg, store=folder_store(folders))
    here = {o.index: o.utility for o in evaluate_many(study, MASKS, workers=1, folders=folders)}
    assert set(here) == set(MASKS) and all(np.isfinite(list(here.values())))
    return study, folders, here


def _utilities(outcomes) -> dict[int, float]:
    return {o.index: o.utility for o in outcomes}


def test_two_worker_processes_match_one_process(prepared):
    study, folders, here = prepared
    workers = _utilities(evaluate_many(study, MASKS, workers=2, folders=folders))
    assert workers.keys() == here.keys()
    np.testing.assert_allclose([workers[i] for i in MASKS], [here[i] for i in MASKS], rtol=0, atol=1e-6)


def test_ray_tasks_match_one_process(prepared, ray_cluster):
    study, folders, here = prepared
    spec = ExecutorSpec("ray", None, 0.0, 1)
    remote = _utilities(evaluate_many(study, MASKS, workers=2, folders=folders, spec=spec))
    assert remote.keys() == here.keys()
    np.testing.assert_allclose([remote[i] for i in MASKS], [here[i] for i in MASKS], rtol=0, atol=1e-6)


def test_parse_request_takes_the_executor_options():
    request = parse_request("artworks", tiny=True, budget=6, workers=2, executor="ray", ray_address="auto",
                            num_gpus=0.5, max_retries=1)
    assert request.executor == ExecutorSpec("ray", "auto", 0.5, 1) and request.workers == 2
