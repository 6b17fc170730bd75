"""Shared entry of the MLproject scripts: the CLI's error boundary, and no run left behind for a bad request.

``mlflow run`` creates its run before a script starts and ends it after the script exits (FAILED for a failed
script, even when the script deleted the run: MLflow then prints a traceback). So a script whose parameters are
rejected, by the parser or by validation, prints one message, exits 2, and leaves the run to a detached helper
that deletes it once ``mlflow run`` has ended it: nothing half-logged. A user error after validation (a damaged
model folder, ...) exits 2 with its message too; that run stays, FAILED by ``mlflow run``, with what it logged.

A script stops when ``mlflow run`` dies (SIGTERM to it forwards nothing): ``lifetime.stop_with_parent``, armed in
``validated`` once the use case passed its light check, raises ``Stopped`` in it, its own runs end KILLED, and it
ends the run ``mlflow run`` made KILLED with the reason. Heavy imports wait for that check: a mistyped use case is
answered before torch and MLflow load.
"""

from __future__ import annotations

import os
import sys

import click

__all__ = ["run_script", "validated"]

_STATE: dict[str, object] = {"validated": False, "parent": None}


def validated(parse=None, **options):
    """``parse(**options)`` (default ``shapflow.attribution.parse_request``); its user errors go to
    ``run_script``, which discards the run ``mlflow run`` made."""
    if "use_case" in options:  # the use case and overrides first: answered before torch and MLflow load
        from shapflow.config import load_use_case
        from shapflow.config.request import split_overrides

        load_use_case(options.get("config") or options["use_case"], split_overrides(options.get("overrides", "")))
    if os.environ.get("MLFLOW_RUN_ID"):  # `mlflow run` killed from here on: stop too, and end its run
        from shapflow.services.lifetime import stop_with_parent

        stop_with_parent(_STATE["parent"])
    if parse is None:
        from shapflow.attribution import parse_request as parse

    request = parse(**options)
    _STATE["validated"] = True
    return request


def run_script(command: click.Command) -> None:
    """Run a script's Click ``command``: a parser or user error prints ``shapflow: <message>`` and exits 2
    (before validation, the ``mlflow run`` run is discarded); anything else is a bug and keeps its traceback."""
    from shapflow.cli.errors import user_errors

    run_id, parent = os.environ.get("MLFLOW_RUN_ID"), os.getppid()
    _STATE["parent"] = parent  # watched from validation on (``validated``)
    try:
        with user_errors():
            command.main(standalone_mode=False)
    except click.ClickException as err:
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id and not _STATE["validated"]:
            from shapflow.tracking.entry_runs import discard_when_ended

            discard_when_ended(run_id)
        prefix = "" if _STATE["validated"] else "invalid parameters: "
        print(f"shapflow: {prefix}{err.format_message()}", file=sys.stderr)
        raise SystemExit(2) from None
    except click.Abort:
        if run_id and os.getppid() != parent:
            from shapflow.tracking.entry_runs import retire_run

            retire_run(run_id, f"mlflow run (PID {parent}) was killed; its entry point (PID {os.getpid()}) stopped "
                               "with it")
        print("shapflow: stopped", file=sys.stderr)
        raise SystemExit(130) from None
