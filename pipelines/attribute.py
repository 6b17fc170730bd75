"""MLproject entry points ``attribute`` and ``main``: the whole chain for one use case (see shapflow run)."""

from __future__ import annotations

import click
from _common import run_script, validated

from shapflow.cli.options import attribute_options


@click.command()
@attribute_options
def main(**options) -> None:
    request = validated(**options)
    from shapflow.attribution import run_attribute  # after validation: start-up speed of a rejection
    from shapflow.tracking import default_tracking_uri
    from shapflow.tracking.store import runs_page

    result = run_attribute(request, progress=True)
    print(result.values.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"values and plots of attribute run {result.run_id}: {result.artifact_uri}/"
          "{values.csv, values.md, values.png, convergence.png, samples_full.png}")
    print(f"the runs in the MLflow UI: {runs_page(default_tracking_uri(), result.experiment_id)}")


if __name__ == "__main__":
    run_script(main)
