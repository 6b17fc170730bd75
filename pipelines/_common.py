"""Shared entry of the MLproject scripts: the CLI's error boundary, and no run left behind for a bad request.

``mlflow run`` creates its run before a script starts and ends it after the script exits (FAILED for a failed
script, even when the script deleted the run: MLflow then prints a traceback). So a script whose parameters are
rejected, by the parser or by validation, prints one message, exits 2, and leaves the run to a detached helper
that deletes it once ``mlflow run`` has ended it: nothing half-logged. A user error after validation (a damaged
model folder, ...) exits 2 with its message too; that run stays, FAILED by ``mlflow run``, with what it logged.

A script stops when ``mlflow run`` dies (SIGTERM to it forwards nothing): ``lifetime.stop_with_parent`` raises
``Stopped`` in it, its own runs end KILLED, and it ends the run ``mlflow run`` made KILLED with the reason.
"""

from __future__ import annotations

import os
import sys

import click

__all__ = ["run_script", "validated"]

_STATE = {"validated": False}


def validated(parse=None, **options):
    """``parse(**options)`` (default ``shapflow.attribution.parse_request``); its user errors go to
    ``run_script``, which discards the run ``mlflow run`` made."""
    from shapflow.attribution import parse_request

    request = (parse or parse_request)(**options)
    _STATE["validated"] = True
    return request


def run_script(command: click.Command) -> None:
    """Run a script's Click ``command``: a parser or user error prints ``shapflow: <message>`` and exits 2
    (before validation, the ``mlflow run`` run is discarded); anything else is a bug and keeps its traceback."""
    from shapflow.cli.errors import user_errors
    from shapflow.execution.lifetime import stop_with_parent

    run_id = os.environ.get("MLFLOW_RUN_ID")
    parent = stop_with_parent() if run_id else None  # `mlflow run` killed: stop too, and end its run
    try:
        with user_errors():
            command.main(standalone_mode=False)
    except click.ClickException as err:
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id and not _STATE["validated"]:
            from shapflow.tracking.runs import discard_when_ended

            discard_when_ended(run_id)
        prefix = "" if _STATE["validated"] else "invalid parameters: "
        print(f"shapflow: {prefix}{err.format_message()}", file=sys.stderr)
        raise SystemExit(2) from None
    except click.Abort:
        if parent is not None and os.getppid() != parent:
            from shapflow.tracking.runs import retire_run

            retire_run(run_id, f"mlflow run (PID {parent}) was killed; its entry point (PID {os.getpid()}) stopped "
                               "with it")
        print("shapflow: stopped", file=sys.stderr)
        raise SystemExit(130) from None
