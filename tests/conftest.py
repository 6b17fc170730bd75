"""Test-wide setup. TRITON_INTERPRET must be set before triton is first imported."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep cached artefacts (e.g. the digits classifier) in one session-wide temp folder."""
    cache = tmp_path_factory.getbasetemp() / "shapflow-cache"
    monkeypatch.setenv("SHAPFLOW_CACHE_DIR", str(cache))
