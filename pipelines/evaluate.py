"""MLproject entry point ``evaluate``: LDS (and counterfactual removal) against retrained ground truth."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from _common import run_script, validated

from shapflow.cli.evaluate_commands import evaluation_options
from shapflow.evaluation.evaluate import evaluate, parse_eval_request
from shapflow.evaluation.runs import JobsExported, RetrainingNotAsked
from shapflow.evaluation.tables import to_markdown


@click.command()
@click.option("--kind", type=click.Choice(["lds", "counterfactual"]), default="lds", show_default=True)
@evaluation_options
def main(kind: str, out: Path, json_path: str, **options) -> None:
    request = validated(parse_eval_request, **options)
    try:
        result = evaluate(request, counterfactual=kind == "counterfactual", out=out,
                          json_path=Path(json_path) if json_path else None)
    except JobsExported as stopped:  # the missing retrainings went to a job file: say how to go on
        print(stopped, file=sys.stderr)
        return
    except RetrainingNotAsked as stopped:  # retrainings were not asked for (-P retrain=true): say what, exit 2
        print(f"shapflow: {stopped}", file=sys.stderr)
        raise SystemExit(2) from None
    print(to_markdown(result.frame))
    print(f"tables and plots of evaluate run {result.run_id}: {out} (and its artifacts)")


if __name__ == "__main__":
    run_script(main)
