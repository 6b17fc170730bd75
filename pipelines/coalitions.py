"""MLproject entry point ``coalitions``: evaluate planned coalitions ``start``..``stop`` (sampler order)."""

from __future__ import annotations

import click
from _common import run_script, validated

from shapflow.attribution import run_attribute
from shapflow.cli.options import WHOLE, attribute_options


@click.command()
@click.option("--start", type=WHOLE, default=0, show_default=True, help="First coalition index of the batch.")
@click.option("--stop", type=WHOLE, default=None, help="One past the last index [default: the budget].")
@attribute_options
def main(start: int, stop: int | None, **options) -> None:
    request = validated(**options)
    result = run_attribute(request, progress=True, batch=slice(start, stop or None))
    print(f"{result.evaluated_now} coalitions evaluated in run {result.run_id} (study {result.study_id[:12]})")


if __name__ == "__main__":
    run_script(main)
