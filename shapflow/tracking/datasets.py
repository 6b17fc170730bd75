"""The contributors' data as MLflow datasets, logged as the "training" input of the runs that trained on it.

``Contributors`` describes one use case's market once; its ``dataset()`` is the whole market (the input of
the attribute run, the stage runs and v(all)), ``coalition(mask, cid)`` the subset a coalition's sFT trained
on. Each is an ``mlflow.entities.Dataset``:

- name: ``<use case>-contributors``, or ``<use case>-coalition-<id>`` for a coalition;
- digest: 16 hex digits of the sha256 of the data stage key (data config + asset paths) and the images per
  contributor; a coalition's adds its mask;
- source (type ``shapflow``): JSON ``{"use_case", "data": the data config, "assets": the data's asset paths}``;
- schema: the tensors the denoiser trains on, ``images`` (-1, C, H, W) float32 (pixels, or latents for the
  latent and sd_lora families) and ``contributor`` (-1,) int64;
- profile (the recipe): JSON ``{"data.source", "num_contributors", "num_images", "images_per_contributor":
  {name: count}, "description"}``; a coalition's lists only its members.

Nothing is hashed image by image, so building a coalition's dataset costs microseconds; logging it is one call.

Names are data, never parts of a joined string or of a key: a run that holds per-contributor numbers logs the
name map as params ``contributor.<index>`` = name (``contributor_params``) and the numbers under keys by index
(``value.<index>``, ``value_metrics``); ``logged_names`` / ``logged_values`` read them back, and read studies
logged before (the v1 run's comma-joined ``contributors`` param, metrics ``value.<name>``) where that is exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag, Run
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from shapflow.config import InputError, UseCaseConfig, identity, stage_key, to_dict
from shapflow.data import ContributorDataset
from shapflow.tracking.store import Tracker

__all__ = ["DATASET_SOURCE", "NAME_PARAM", "Contributors", "contributor_params", "log_training_input", "logged_names",
           "logged_values", "value_metrics"]

DATASET_SOURCE = "shapflow"
NAME_PARAM = "contributor"  # params contributor.<index> = name
_DATA_ASSETS = ("cifar100", "celebahq_images", "celebahq_labels", "artbench_images", "artbench_metadata")


@dataclass(frozen=True)
class Contributors:
    """A use case's contributors, ready to be logged as MLflow datasets (the market, or a coalition's part)."""

    use_case: str
    names: tuple[str, ...]
    counts: tuple[int, ...]
    digest: str
    source: str
    schema: str
    description: str
    data_source: str

    @classmethod
    def of(cls, cfg: UseCaseConfig, data: ContributorDataset) -> Contributors:
        """The contributors of ``cfg`` whose training tensors are ``data`` (images or latents)."""
        counts = tuple(int(c) for c in data.counts())
        assets = {key: getattr(cfg.assets, key) for key in _DATA_ASSETS if getattr(cfg.assets, key)}
        source = json.dumps({"use_case": cfg.name, "data": to_dict(cfg.data), "assets": assets}, sort_keys=True)
        shape = [-1, *(int(d) for d in data.images.shape[1:])]
        schema = {"mlflow_tensorspec": {
            "features": Schema([TensorSpec(np.dtype(np.float32), tuple(shape), "images")]).to_json(),
            "targets": Schema([TensorSpec(np.dtype(np.int64), (-1,), "contributor")]).to_json()}}
        return cls(cfg.name, tuple(data.names), counts, identity(stage_key(cfg, "data"), data.names, counts)[:16],
                   source, json.dumps(schema), cfg.description, cfg.data.source)

    def _entity(self, name: str, digest: str, members: np.ndarray) -> Dataset:
        profile = {"data.source": self.data_source, "num_contributors": int(members.size),
                   "num_images": int(sum(self.counts[i] for i in members)),
                   "images_per_contributor": {self.names[i]: self.counts[i] for i in members},
                   "description": self.description}
        return Dataset(name, digest, DATASET_SOURCE, self.source, self.schema, json.dumps(profile))

    def dataset(self) -> Dataset:
        """The whole market: ``<use case>-contributors``."""
        return self._entity(f"{self.use_case}-contributors", self.digest, np.arange(len(self.names)))

    def coalition(self, mask: np.ndarray, cid: str) -> Dataset:
        """The part of coalition ``cid`` (``mask``: bool, (n_contributors,)): ``<use case>-coalition-<cid>``."""
        mask = np.asarray(mask, dtype=bool)
        digest = identity(self.digest, np.flatnonzero(mask).tolist())[:16]
        return self._entity(f"{self.use_case}-coalition-{cid}", digest, np.flatnonzero(mask))


def log_training_input(tracker: Tracker, run_id: str, dataset: Dataset) -> None:
    """Log ``dataset`` as the run's input with context ``training`` (one call)."""
    tag = InputTag(MLFLOW_DATASET_CONTEXT, "training")
    tracker.call("log_inputs", run_id, datasets=[DatasetInput(dataset, tags=[tag])])


def contributor_params(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The name map as params: ``contributor.<index>`` = the name, exactly (a name may hold any character)."""
    return {f"{NAME_PARAM}.{i}": name for i, name in enumerate(names)}


def value_metrics(values: np.ndarray, prefix: str = "value") -> dict[str, float]:
    """Per-contributor numbers (n,) as metrics ``<prefix>.<index>`` (keys MLflow accepts whatever the names)."""
    return {f"{prefix}.{i}": float(v) for i, v in enumerate(np.asarray(values, dtype=float))}


def _names_of(params: dict[str, str]) -> tuple[str, ...] | None:
    """The name map of a run's params (None when it has none); a gap in the indices is a damaged map."""
    found = {int(key.split(".", 1)[1]): value for key, value in params.items()
             if key.startswith(f"{NAME_PARAM}.") and key.split(".", 1)[1].isdigit()}
    if not found:
        return None
    if sorted(found) != list(range(len(found))):
        raise InputError(f"the run's contributor.<index> params skip indices (have {sorted(found)}): the run was "
                         "edited; rerun `shapflow run` to log a whole name map")
    return tuple(found[i] for i in range(len(found)))


def logged_names(tracker: Tracker, attribute_run: Run, table: pd.DataFrame) -> tuple[str, ...]:
    """The contributor names of a study, in index order: the name map of its attribute run, or for a study
    logged before name maps its v1 run's comma-joined ``contributors`` param, used only when it splits into
    exactly one name per mask position (else an ``InputError`` saying how to get a name map)."""
    names = _names_of(attribute_run.data.params)
    if names is not None:
        return names
    n = len(table["mask"].iloc[0]) if len(table) else 0
    ends = table[table["coalition_id"] == "v1"] if len(table) else table
    joined = tracker.call("get_run", ends["run_id"].iloc[0]).data.params.get("contributors") if len(ends) else None
    if joined is None or len(joined.split(",")) != n:
        raise InputError(f"attribute run {attribute_run.info.run_id} has no contributor names shapflow can read back "
                         "(it was logged before names were stored one by one, and a name holds a comma or the list "
                         "is missing): run the same `shapflow run` again; it reuses every logged coalition and "
                         "logs the names")
    return tuple(joined.split(","))


def logged_values(run: Run, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Per-contributor values (n,) of a run: metrics ``value.<index>`` when it holds a name map, else (a run
    logged before name maps) metrics ``value.<name>``."""
    metrics = run.data.metrics
    if _names_of(run.data.params) is not None:
        return np.array([metrics[f"value.{i}"] for i in range(len(names))], dtype=float)
    return np.array([metrics[f"value.{name}"] for name in names], dtype=float)
