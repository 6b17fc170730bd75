"""The tags shapflow writes on MLflow runs and experiments: the words every tracking module shares (a run is
found by its tags, never by stringified params), and ``quoted``, through which every value enters a search filter."""

from shapflow.config import InputError

__all__ = ["DESIGN_TAG", "KEY_TAG", "KIND_TAG", "PARENT_TAG", "RETIRED_TAG", "SMOKE_TAG", "STAGE_TAG", "STUDY_TAG",
           "TRAINING_KIND", "USE_CASE_TAG", "quoted"]

STAGE_TAG = "shapflow.stage"
KEY_TAG = "shapflow.key"
STUDY_TAG = "shapflow.study"
DESIGN_TAG = "shapflow.design"  # on an attribute run: its Request.design_key (coalitions, estimator, budget, seed)
USE_CASE_TAG = "shapflow.use_case"
SMOKE_TAG = "shapflow.smoke"  # "true" on the runs of a SMOKE configuration (tiny random stand-ins)
PARENT_TAG = "mlflow.parentRunId"
RETIRED_TAG = "shapflow.retired"  # why a leftover run was marked KILLED
# The experiment kind MLflow 3 records and its UI reads (mlflow/server/js: ExperimentKind): model training opens on
# the runs table. The 3.17 UI bundle reads it only with its GenAI/Model-training switch off; with the switch (on by
# default) the kind follows ``?workflowType=machine_learning`` in the URL (``runs_page``) or the switch's last state.
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def quoted(value: str) -> str:
    """``value`` as a string literal of an MLflow search filter: in single quotes, or in double quotes when it holds
    a single quote. MLflow's filter grammar has no escapes, so a value holding both quote kinds cannot be searched
    for: ``InputError``. Every value that enters a filter goes through here, so none can change the query."""
    text = str(value)
    for quote in ("'", '"'):
        if quote not in text:
            return f"{quote}{text}{quote}"
    raise InputError(f"{text!r} holds both quote kinds and cannot be looked up in an MLflow store: rename it")
