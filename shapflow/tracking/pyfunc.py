"""Registered stages as MLflow models (models-from-code, nothing pickled): load with ``mlflow.pyfunc.load_model``,
serve with ``mlflow models serve``.

A stage run's ``model`` folder (safetensors / PEFT adapter files + ``stage.json``) becomes the artifact
``stage`` of an MLflow LoggedModel whose code is the file ``pyfunc_model.py`` beside this module (it calls
``mlflow.models.set_model(StageModel())``); MLflow copies that file into the model and runs it on load, so no
Python object is ever pickled. Loading needs shapflow importable and the frozen assets named in
``stage.json`` (e.g. the Stable Diffusion base model of a LoRA adapter) where they were when it was trained.

``predict`` input (a DataFrame, one row per image):
  ``seed`` (long, required): the image is the first image of the use case's common-random-number noise with
  ``sampling.seed = seed`` (``shapflow.utility.deploy.seed_image``; ``shapflow models check --seed`` gives the
  same image); ``num_inference_steps`` (long, optional: DDIM steps, default ``sampling.num_inference_steps``);
  ``score`` (boolean, optional): also sample that seed's image SET (``sampling.num_images`` images) and score it.
Output (a DataFrame, one row per input row): ``seed``, ``num_inference_steps``, ``image`` (the image as nested
lists (C, H, W) of floats in [-1, 1]); with any ``score`` true also ``utility`` (the use case's utility of the
set) and ``properties`` ({property: value} of the set), None in the rows that did not ask.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import Array, ColSpec, Map, Schema

from shapflow.properties import Property
from shapflow.tracking.store import Tracker, global_tracking_uri
from shapflow.utility import load_scorer
from shapflow.utility.deploy import LoadedStage, load_stage_folder, seed_image, seed_properties

__all__ = ["CODE_FILE", "MODEL_TAG", "SIGNATURE", "STAGE_ARTIFACT", "StageModel", "log_stage_model"]

CODE_FILE = Path(__file__).with_name("pyfunc_model.py")
STAGE_ARTIFACT = "stage"
MODEL_TAG = "shapflow.registered_as"  # on the LoggedModel: the registered model it was logged for
_INPUTS = ("seed", "num_inference_steps", "score")
SIGNATURE = ModelSignature(
    Schema([ColSpec("long", "seed"), ColSpec("long", "num_inference_steps", required=False),
            ColSpec("boolean", "score", required=False)]),
    Schema([ColSpec("long", "seed"), ColSpec("long", "num_inference_steps"),
            ColSpec(Array(Array(Array("double"))), "image"), ColSpec("double", "utility", required=False),
            ColSpec(Map("double"), "properties", required=False)]))
_REQUIREMENTS = ("mlflow", "torch", "diffusers", "peft", "safetensors", "pandas")


class StageModel(PythonModel):
    """A shapflow stage (any model family) as an MLflow pyfunc: seeds in, images (and optionally scores) out."""

    def load_context(self, context: PythonModelContext) -> None:
        self.loaded: LoadedStage = load_stage_folder(context.artifacts[STAGE_ARTIFACT])
        self.scorer = None  # loaded on the first row that asks for a score

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per input row (see the module docstring for the schema)."""
        frame = _checked(model_input)
        default_steps = self.loaded.cfg.sampling.num_inference_steps
        seeds = [int(seed) for seed in frame["seed"]]
        given = "num_inference_steps" in frame
        steps = [int(k) for k in frame["num_inference_steps"]] if given else [default_steps] * len(seeds)
        images = [seed_image(self.loaded, s, k).tolist() for s, k in zip(seeds, steps, strict=True)]
        out = pd.DataFrame({"seed": seeds, "num_inference_steps": steps, "image": images})
        if "score" in frame and frame["score"].any():
            scores = [seed_properties(self.loaded, self._scorer(), s, k) if wanted else None
                      for s, k, wanted in zip(seeds, steps, frame["score"], strict=True)]
            out["utility"] = pd.Series([p.pop("utility") if p else None for p in scores], dtype=object)
            out["properties"] = pd.Series(scores, dtype=object)  # None where not asked (JSON null, not NaN)
        return out

    def _scorer(self) -> Property:
        if self.scorer is None:
            self.scorer = load_scorer(self.loaded.cfg)
        return self.scorer


def _checked(frame: pd.DataFrame) -> pd.DataFrame:
    """The input with its columns checked: ``seed`` present, nothing unknown, no gaps in optional columns."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    unknown = sorted(set(frame.columns) - set(_INPUTS))
    if "seed" not in frame or unknown:
        raise ValueError(f"model input columns {list(frame.columns)} are invalid: give seed (required), "
                         f"num_inference_steps and score (optional), nothing else (unknown: {unknown or 'none'})")
    for column in _INPUTS:
        if column in frame and frame[column].isna().any():
            raise ValueError(f"column {column!r} has missing values: give it for every row or drop the column")
    return frame


def _requirements() -> list[str]:
    """Pinned requirements of the environment that logged the model (shapflow itself is not on an index)."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for name in _REQUIREMENTS:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned


def _logged(tracker: Tracker, run_id: str, name: str) -> str | None:
    """The READY LoggedModel logged for registered model ``name`` from stage run ``run_id``, if any."""
    found = tracker.call("search_logged_models", [tracker.experiment_id],
                         filter_string=f"source_run_id = '{run_id}' AND tags.`{MODEL_TAG}` = '{name}'")
    ready = [m for m in found if str(m.status) in ("READY", "LoggedModelStatus.READY")]
    return ready[0].model_id if ready else None


def log_stage_model(tracker: Tracker, run_id: str, name: str) -> str:
    """The id of the MLflow model of stage run ``run_id`` (its ``model`` folder), logged once for ``name``.

    The LoggedModel is created in the run's experiment with ``source_run_id = run_id`` and linked as the run's
    output; the run's status is left as it is (a FINISHED stage run stays FINISHED).
    """
    found = _logged(tracker, run_id, name)
    if found:
        return found
    model = tracker.call("create_logged_model", tracker.experiment_id, name=name, source_run_id=run_id,
                         tags={MODEL_TAG: name}, model_type="shapflow-stage")
    try:
        with global_tracking_uri(tracker.uri), warnings.catch_warnings():  # log_model reads the global URI
            # an input example would make log_model load the model and sample (minutes for SD on a CPU)
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            mlflow.pyfunc.log_model(name=name, python_model=str(CODE_FILE), model_id=model.model_id,
                                    artifacts={STAGE_ARTIFACT: f"runs:/{run_id}/model"}, signature=SIGNATURE,
                                    pip_requirements=_requirements())
    except BaseException:  # a full disk, a signal: the model is FAILED, never left PENDING for a later reader
        with contextlib.suppress(Exception):
            tracker.call("finalize_logged_model", model.model_id, LoggedModelStatus.FAILED)
        raise
    tracker.call("log_outputs", run_id, [LoggedModelOutput(model.model_id, step=0)])
    return model.model_id
