"""The only MLflow code: the client and its retried writes (``store``), claims on run keys (``claims``), the
tags runs are found by (``tags``), an entry point's runs and reading them back (``entry_runs``), stage runs
(``stage_runs``), the contributors as MLflow datasets (``datasets``), the model registry (``registry``) whose
versions are MLflow models (``pyfunc``), who owns a RUNNING run (``owner``). The tracking server process is
``shapflow.services.server``."""

from shapflow.tracking.claims import CLAIM_ATTEMPTS, Finisher
from shapflow.tracking.datasets import (
    Contributors,
    contributor_params,
    log_training_input,
    logged_names,
    logged_values,
    value_metrics,
)
from shapflow.tracking.entry_runs import (
    LINK_TAG,
    FinishedLookup,
    RunStopped,
    latest_experiment,
    parent_run,
    studies,
    study_config,
    utilities_table,
    with_members,
)
from shapflow.tracking.owner import HEARTBEAT_TAG, OWNER_TAG, owner_alive
from shapflow.tracking.registry import (
    NoSuchModel,
    RegisteredModel,
    list_versions,
    load_registered,
    register_stage,
    set_alias,
)
from shapflow.tracking.stage_runs import TrackedStore
from shapflow.tracking.store import (
    NoSuchExperiment,
    Tracker,
    client_for,
    code_version,
    default_tracking_uri,
    open_tracker,
)
from shapflow.tracking.tags import (
    DESIGN_TAG,
    KEY_TAG,
    PARENT_TAG,
    SMOKE_TAG,
    STAGE_TAG,
    STUDY_TAG,
    USE_CASE_TAG,
    quoted,
)

__all__ = ["CLAIM_ATTEMPTS", "DESIGN_TAG", "HEARTBEAT_TAG", "KEY_TAG", "LINK_TAG", "OWNER_TAG", "PARENT_TAG",
           "SMOKE_TAG", "STAGE_TAG", "STUDY_TAG", "USE_CASE_TAG", "Contributors", "FinishedLookup", "Finisher",
           "NoSuchExperiment", "NoSuchModel", "RegisteredModel", "RunStopped", "TrackedStore", "Tracker",
           "client_for", "code_version", "contributor_params", "default_tracking_uri", "latest_experiment",
           "list_versions", "load_registered", "log_training_input", "logged_names", "logged_values", "open_tracker",
           "owner_alive", "parent_run", "quoted", "register_stage", "set_alias", "studies", "study_config",
           "utilities_table", "value_metrics", "with_members"]
