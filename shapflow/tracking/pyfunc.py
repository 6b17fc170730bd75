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
lists (C, H, W) of floats in [-1, 1]), ``settings`` (JSON: the use case, stage, DDIM eta, precision and the
server's limits the row was generated with); with any ``score`` true also ``utility`` (the use case's utility of
the set) and ``properties`` ({property: value} of the set), None in the rows that did not ask.

Limits, so a server cannot be made to compute for minutes: a seed in [0, 2^32 - 1], steps in [1, the model's
timesteps], at most ``SHAPFLOW_SERVE_MAX_ROWS`` rows per request (default 64), and a time limit per request
(``SHAPFLOW_SERVE_TIME_LIMIT`` seconds, default 120) checked before each row and between denoising steps
(``generation.deadline``): past it the request stops with an error saying how far it got. MLflow's scoring server
gives ``predict`` no way to see a client that hung up, so this limit is what bounds an abandoned request.
Both settings are read from the environment when the model loads. A bad request is answered with one line
(``MlflowException``, HTTP 400; 429 past the time limit), never a stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, REQUEST_LIMIT_EXCEEDED
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import Array, ColSpec, Map, Schema

from shapflow.config import InputError
from shapflow.generation.deadline import DeadlineExceeded, check_deadline, deadline
from shapflow.properties import Property
from shapflow.tracking.store import Tracker, global_tracking_uri
from shapflow.tracking.tags import quoted
from shapflow.utility import load_scorer
from shapflow.utility.deploy import LoadedStage, load_stage_folder, seed_image, seed_properties, seeded_context

__all__ = ["CODE_FILE", "MAX_ROWS", "MODEL_TAG", "SIGNATURE", "STAGE_ARTIFACT", "TIME_LIMIT", "StageModel",
           "log_stage_model"]

CODE_FILE = Path(__file__).with_name("pyfunc_model.py")
STAGE_ARTIFACT = "stage"
MODEL_TAG = "shapflow.registered_as"  # on the LoggedModel: the registered model it was logged for
_INPUTS = ("seed", "num_inference_steps", "score")
MAX_ROWS = ("SHAPFLOW_SERVE_MAX_ROWS", 64)  # (setting, default): rows per request
TIME_LIMIT = ("SHAPFLOW_SERVE_TIME_LIMIT", 120.0)  # (setting, default): seconds per request
SIGNATURE = ModelSignature(
    Schema([ColSpec("long", "seed"), ColSpec("long", "num_inference_steps", required=False),
            ColSpec("boolean", "score", required=False)]),
    Schema([ColSpec("long", "seed"), ColSpec("long", "num_inference_steps"),
            ColSpec(Array(Array(Array("double"))), "image"), ColSpec("string", "settings"),
            ColSpec("double", "utility", required=False),
            ColSpec(Map("double"), "properties", required=False)]))
_REQUIREMENTS = ("mlflow", "torch", "diffusers", "peft", "safetensors", "pandas")


class StageModel(PythonModel):
    """A shapflow stage (any model family) as an MLflow pyfunc: seeds in, images (and optionally scores) out."""

    def load_context(self, context: PythonModelContext) -> None:
        self.loaded: LoadedStage = load_stage_folder(context.artifacts[STAGE_ARTIFACT])
        self.scorer = None  # loaded on the first row that asks for a score
        self.max_rows = int(_setting(*MAX_ROWS))
        self.time_limit = _setting(*TIME_LIMIT)

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per input row (see the module docstring for the schema and the limits)."""
        try:
            frame = _checked(model_input, self.max_rows)
            seeds = [int(seed) for seed in frame["seed"]]
            default = self.loaded.cfg.sampling.num_inference_steps
            steps = [int(k) for k in frame["num_inference_steps"]] if "num_inference_steps" in frame \
                else [default] * len(seeds)
            for s, k in zip(seeds, steps, strict=True):
                seeded_context(self.loaded, s, k)  # every row checked before any is generated
            wanted = [bool(w) for w in frame["score"]] if "score" in frame else [False] * len(seeds)
        except InputError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        images, scores = [], []
        with deadline(self.time_limit):
            for s, k, score in zip(seeds, steps, wanted, strict=True):
                try:
                    check_deadline()
                    images.append(seed_image(self.loaded, s, k).tolist())
                    scores.append(seed_properties(self.loaded, self._scorer(), s, k) if score else None)
                except DeadlineExceeded as stop:
                    raise MlflowException(
                        f"time limit of {self.time_limit:g} s ({TIME_LIMIT[0]}) reached after {len(images)} of "
                        f"{len(seeds)} rows and {stop.steps} denoising steps: send fewer rows or steps per "
                        "request, or raise the limit", error_code=REQUEST_LIMIT_EXCEEDED) from None
        out = pd.DataFrame({"seed": seeds, "num_inference_steps": steps, "image": images,
                            "settings": [self._settings(k) for k in steps]})
        if any(wanted):
            out["utility"] = pd.Series([p.pop("utility") if p else None for p in scores], dtype=object)
            out["properties"] = pd.Series(scores, dtype=object)  # None where not asked (JSON null, not NaN)
        return out

    def _settings(self, steps: int) -> str:
        """What a row was generated with, as JSON."""
        cfg = self.loaded.cfg
        return json.dumps({"use_case": cfg.name, "stage": self.loaded.stage, "num_inference_steps": steps,
                           "eta": cfg.sampling.eta, "precision": cfg.precision, "max_rows": self.max_rows,
                           "time_limit_s": self.time_limit})

    def _scorer(self) -> Property:
        if self.scorer is None:
            self.scorer = load_scorer(self.loaded.cfg)
        return self.scorer


def _setting(name: str, default: float) -> float:
    """A positive number from the environment variable ``name`` (``default`` when unset); ``InputError`` names it."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or (isinstance(default, int) and not value.is_integer()):
        raise InputError(f"{name}={text!r} is invalid: give a positive {type(default).__name__} (default {default})")
    return value


def _checked(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """The input with its columns and size checked: ``seed`` present, nothing unknown, no gaps, whole numbers,
    at most ``max_rows`` rows; ``InputError`` says what to send instead."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    unknown = sorted(set(frame.columns) - set(_INPUTS))
    if "seed" not in frame or unknown:
        raise InputError(f"model input columns {list(frame.columns)} are invalid: give seed (required), "
                         f"num_inference_steps and score (optional), nothing else (unknown: {unknown or 'none'})")
    if len(frame) > max_rows:
        raise InputError(f"{len(frame)} rows is over this server's cap of {max_rows} rows per request "
                         f"({MAX_ROWS[0]}): send at most {max_rows} rows per request")
    for column in _INPUTS:
        if column in frame and frame[column].isna().any():
            raise InputError(f"column {column!r} has missing values: give it for every row or drop the column")
    for column in ("seed", "num_inference_steps"):
        bad = [v for v in frame.get(column, []) if not float(v).is_integer()]
        if bad:
            raise InputError(f"{column}={bad[0]!r} is invalid: give a whole number")
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
                         filter_string=f"source_run_id = {quoted(run_id)} AND tags.`{MODEL_TAG}` = {quoted(name)}")
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
