"""Shared parsing for the MLproject scripts: validate everything before the run is touched.

``mlflow run`` creates the run before a script starts; when parameters are invalid the script deletes
that run (so no run is left in the experiment) and exits with status 2 and the error message.
"""

from __future__ import annotations

import os
import sys

from shapflow.config import ConfigError

__all__ = ["validated"]


def validated(parse=None, **options):
    """``parse(**options)`` (default ``shapflow.attribution.run.parse_request``), or exit 2 (deleting the run
    ``mlflow run`` made)."""
    from shapflow.attribution import parse_request
    from shapflow.data.assets import MissingAssetsError

    try:
        return (parse or parse_request)(**options)
    except (ConfigError, MissingAssetsError) as err:
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if run_id:
            from shapflow.tracking import open_tracker

            tracker = open_tracker()
            tracker.end(run_id, "FAILED")  # terminated first, so `mlflow run` leaves it alone
            tracker.call("delete_run", run_id)
        print(f"shapflow: invalid parameters: {err}", file=sys.stderr)
        raise SystemExit(2) from None
