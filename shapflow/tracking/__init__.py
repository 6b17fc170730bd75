"""The only MLflow code: the client and its retried writes (``store``), an entry point's runs and reading them
back (``runs``), stage runs (``stages``), the contributors as MLflow datasets (``datasets``), the model registry
(``registry``) whose versions are MLflow models (``pyfunc``), the tracking server (``server``)."""

from shapflow.tracking.datasets import Contributors, log_training_input
from shapflow.tracking.registry import RegisteredModel, load_registered, register_stage, resolve_model
from shapflow.tracking.runs import FinishedLookup, RunStopped, latest_experiment, parent_run, studies, utilities_table
from shapflow.tracking.stages import TrackedStore
from shapflow.tracking.store import (
    KEY_TAG,
    PARENT_TAG,
    SMOKE_TAG,
    STAGE_TAG,
    STUDY_TAG,
    USE_CASE_TAG,
    Finisher,
    Tracker,
    code_version,
    default_tracking_uri,
    open_tracker,
)

__all__ = ["KEY_TAG", "PARENT_TAG", "SMOKE_TAG", "STAGE_TAG", "STUDY_TAG", "USE_CASE_TAG", "Contributors",
           "FinishedLookup", "Finisher", "RegisteredModel", "RunStopped", "TrackedStore", "Tracker", "code_version",
           "default_tracking_uri", "latest_experiment", "load_registered", "log_training_input", "open_tracker",
           "parent_run", "register_stage", "resolve_model", "studies", "utilities_table"]
