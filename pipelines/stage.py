"""MLproject entry points ``train``, ``prune`` and ``finetune``: get-or-run the stages up to one of them."""

from __future__ import annotations

import click
from _common import run_script, validated

from shapflow.cli.options import attribute_options
from shapflow.config import STAGE_CHAIN

STAGES = {stage.entry_point: stage.name for stage in STAGE_CHAIN}  # entry point -> stage


@click.command()
@click.option("--stage", type=click.Choice(sorted(STAGES)), required=True)
@attribute_options
def main(stage: str, **options) -> None:
    request = validated(**{**options, "proxy": False})  # a stage estimates nothing: no data proxy to compute
    from shapflow.attribution import run_stages  # after validation: start-up speed of a rejection

    runs = run_stages(request, STAGES[stage], progress=True)
    for name, run_id in runs.items():
        print(f"{name}: run {run_id}")


if __name__ == "__main__":
    run_script(main)
