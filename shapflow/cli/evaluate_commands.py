"""``shapflow evaluate lds|counterfactual|fixture``: check attributions against retrained ground truth, and keep
that ground truth as a versioned fixture."""

from __future__ import annotations

from pathlib import Path

import click

from shapflow.attribution import load_config
from shapflow.cli.errors import WHOLE, UserError
from shapflow.config import ConfigError
from shapflow.evaluation.evaluate import evaluate, parse_eval_request
from shapflow.evaluation.fixture import fixture_path, ledger_path, pending_jobs, write_fixture
from shapflow.evaluation.runs import JobsExported, RetrainingNotAsked
from shapflow.evaluation.tables import to_markdown
from shapflow.evaluation.worker import write_jobs
from shapflow.tracking import code_version

__all__ = ["evaluate_group", "evaluation_options", "run_evaluation"]


def evaluation_options(command):
    """Options shared by both evaluate commands and the MLproject ``evaluate`` entry point."""
    options = [
        click.option("--use-case", default="digits", show_default=True, help="A shipped use case name or YAML path."),
        click.option("--overrides", default="", help='Field overrides, e.g. "sft.steps=50".'),
        click.option("--alpha", type=float, default=0.5, show_default=True,
                     help="Fraction of contributors in each held-out coalition."),
        click.option("--count", type=WHOLE, default=48, show_default=True, help="Held-out coalitions."),
        click.option("--seeds", type=WHOLE, default=3, show_default=True, help="Training seeds per retraining."),
        click.option("--fraction", type=float, default=0.4, show_default=True,
                     help="Counterfactual: top fraction of contributors removed (or kept)."),
        click.option("--kinds", default="remove,keep", show_default=True,
                     help="Counterfactual retrainings: remove the top fraction, keep only it, or both."),
        click.option("--workers", type=WHOLE, default=0, show_default=True,
                     help="Worker processes for the sFT studies and, on CPU, the retrainings (0 = one per core)."),
        click.option("--budget", type=WHOLE, default=0, show_default=True,
                     help="Coalitions of each sFT study (0 = 10 n); FT-Shapley gets the same compute."),
        click.option("--device", default="cpu", show_default=True, help="Where retrainings run: cpu or cuda[:N]."),
        click.option("--stack", type=WHOLE, default=0, show_default=True,
                     help="Retrainings trained together (vmapped); 0 = up to 64 on a GPU, 1 on a CPU."),
        click.option("--methods", default="", help="Comma-separated subset of methods [default: all]."),
        click.option("--ingest", "ingest", multiple=True, default=(),
                     help="Results file(s) of `python -m shapflow.evaluation.worker` to log first."),
        click.option("--export-jobs", "export", default="",
                     help="Write the missing retrainings to this job file and stop, instead of running them."),
        click.option("--fixture", default="auto", show_default=True,
                     help="Held-out ground truth to read instead of retraining: auto (the packaged fixture of the "
                          "use case and alpha), none, or a fixture file."),
        click.option("--retrain", type=click.BOOL, default=False, show_default=True,
                     help="Retrain from scratch what the store, fixture and --ingest lack (without it: say what and "
                          "how long here, and stop)."),
        click.option("--experiment", default=None, help="MLflow experiment [default: the use case name]."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("shapflow-evaluation"),
                     show_default=True, help="Folder for the tables and plots (also logged as artifacts)."),
        click.option("--json", "json_path", default="",
                     help='Write {method: {"lds": ..., "ci": ...}} (with a "random" row) here.'),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group("evaluate")
def evaluate_group() -> None:
    """Check attributions against coalitions RETRAINED from scratch (tracked, reused, resumable).

    \b
    Examples:
      shapflow evaluate lds --use-case digits --json lds.json              # says what it would retrain
      shapflow evaluate lds --use-case digits --retrain true --json lds.json
      shapflow evaluate counterfactual --use-case digits --retrain true
      shapflow evaluate lds --use-case digits --export-jobs jobs.json   # retrain elsewhere, then --ingest
    """


def run_evaluation(counterfactual: bool, out: Path, json_path: str, **options) -> None:
    """Validate, evaluate, print the table; bad parameters exit 2 with the fix; an export of the missing
    retrainings stops with the commands that go on (exit 0)."""
    try:
        request = parse_eval_request(**options)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    try:
        result = evaluate(request, counterfactual=counterfactual, out=out,
                          json_path=Path(json_path) if json_path else None)
    except JobsExported as stopped:
        click.echo(str(stopped), err=True)
        return
    except RetrainingNotAsked as stopped:  # nothing expensive starts unasked
        raise UserError(str(stopped)) from None
    click.echo(to_markdown(result.frame))
    click.echo(f"\nevaluate run {result.run_id}; tables and plots in {out}")


@evaluate_group.command("lds")
@evaluation_options
def lds_command(out: Path, json_path: str, **options) -> None:
    """Linear datamodeling score of every method on held-out retrained coalitions, with the noise floor."""
    run_evaluation(False, out, json_path, **options)


@evaluate_group.command("counterfactual")
@evaluation_options
def counterfactual_command(out: Path, json_path: str, **options) -> None:
    """LDS plus: retrain without (and with only) each method's top contributors; relative property change."""
    run_evaluation(True, out, json_path, **options)


@evaluate_group.command("fixture")
@click.option("--use-case", default="digits", show_default=True, help="A shipped use case name or YAML path.")
@click.option("--overrides", default="", help='Field overrides, e.g. "train.steps=500".')
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Fraction of contributors per coalition.")
@click.option("--count", type=WHOLE, default=48, show_default=True, help="Held-out coalitions.")
@click.option("--seeds", type=WHOLE, default=3, show_default=True, help="Training seeds per retraining.")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results file of `python -m shapflow.evaluation.worker` [default: the packaged ledger beside the "
                   "fixture].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fixture file [default: the packaged fixture path of the use case and alpha].")
@click.option("--jobs", "jobs_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Instead: write the design's retrainings the results file lacks to this job file (seed by seed).")
def fixture_command(use_case: str, overrides: str, alpha: float, count: int, seeds: int, results: Path | None,
                    out: Path | None, jobs_path: Path | None) -> None:
    """Write the held-out ground truth (the coalitions x seeds the results hold, with the recipe's hash) as a
    versioned fixture that `shapflow evaluate lds` reads instead of retraining; or, with --jobs, the job file of
    what is still missing. The default results file is the ledger in the repository, so the work resumes
    anywhere.

    \b
    Example:
      shapflow evaluate fixture --use-case digits --jobs jobs.json
      python -m shapflow.evaluation.worker jobs.json --out shapflow/evaluation/fixtures/digits-heldout-0.50.jsonl
      shapflow evaluate fixture --use-case digits
    """
    try:
        cfg = load_config(use_case, overrides)
        results = results or ledger_path(cfg.name, alpha)
        train_seeds = tuple(cfg.train.seed + s for s in range(seeds))
        if jobs_path is not None:
            pending = pending_jobs(cfg, alpha, count, train_seeds, results, code_version())
            write_jobs(cfg, pending, jobs_path)
            click.echo(f"wrote {len(pending)} retraining(s) that {results} lacks to {jobs_path}; run them with\n"
                       f"  python -m shapflow.evaluation.worker {jobs_path} --out {results} --workers 0")
            return
        if not results.is_file():
            raise ConfigError(f"results={results} is invalid: no such file; write the job file with --jobs and run "
                              "the worker first")
        out = out or fixture_path(cfg.name, alpha)
        command = (f"shapflow evaluate fixture --use-case {use_case} --alpha {alpha} --count {count} "
                   f"--seeds {seeds} --results {results.name}")
        truth = write_fixture(cfg, alpha, count, train_seeds, results, out, command=command)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    held = sorted({seed for _, seed in truth.rows})
    click.echo(f"wrote {len(truth.rows)} retrained coalitions x seeds (seeds {held} of {list(train_seeds)}; recipe "
               f"{truth.meta['recipe_hash'][:12]}) to {out}")
