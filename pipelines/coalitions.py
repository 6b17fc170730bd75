"""MLproject entry point ``coalitions``: evaluate planned coalitions ``start``..``stop`` (sampler order)."""

from __future__ import annotations

import click
from _common import run_script, validated

from shapflow.attribution import Request, batch_of, parse_request, run_attribute
from shapflow.cli.options import WHOLE, attribute_options


def _with_batch(request: Request, start: int, stop: int | None) -> tuple[Request, slice]:
    """The request and its batch, both checked before validation ends (an index outside the plan leaves no run)."""
    return request, batch_of(request, start, stop or None)


@click.command()
@click.option("--start", type=WHOLE, default=0, show_default=True, help="First coalition index of the batch.")
@click.option("--stop", type=WHOLE, default=None, help="One past the last index [default: the budget].")
@attribute_options
def main(start: int, stop: int | None, **options) -> None:
    request, batch = validated(lambda **o: _with_batch(parse_request(**o), start, stop), **options)
    result = run_attribute(request, progress=True, batch=batch)
    print(f"{result.evaluated_now} coalitions evaluated in run {result.run_id} (study {result.study_id[:12]})")


if __name__ == "__main__":
    run_script(main)
