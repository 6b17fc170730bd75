"""Scale-out commands of the ``shapflow`` CLI: ``server start`` (MLflow on PostgreSQL) and the batch commands
``coalitions emit/prepare/run`` for clusters without Ray (the executor options themselves are request fields:
``cli.options``).

The library is imported in the command bodies, after the options are checked (start-up speed: ``cli.main``).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import click

from shapflow.cli.options import WHOLE, attribute_options, request_from
from shapflow.config.extras import require_extra

__all__ = ["coalitions_group", "server_group"]


@click.group("server")
def server_group() -> None:
    """The tracking server of a cluster: MLflow on PostgreSQL."""


@server_group.command("start")
@click.option("--postgres-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Start (initialising once) a private PostgreSQL cluster in this folder as the backend.")
@click.option("--backend-store-uri", default=None, help="An existing backend, e.g. postgresql+psycopg2://u@h/db.")
@click.option("--artifacts", default="./mlartifacts", show_default=True,
              help="Artifact destination: a folder or s3://bucket/prefix (MLFLOW_S3_ENDPOINT_URL for S3-compatible).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--allow-remote", is_flag=True, help="Allow a non-loopback --host: MLflow has NO authentication there "
              "(docs/security.md).")
@click.option("--experiment", "experiments", multiple=True, help="Create this experiment before workers fan out.")
def server_start(postgres_dir: Path | None, backend_store_uri: str | None, artifacts: str, host: str, port: int,
                 allow_remote: bool, experiments: tuple[str, ...]) -> None:
    """Run ``mlflow server`` on a PostgreSQL backend until Ctrl-C/SIGTERM/SIGHUP; create the experiments first.

    \b
    Example:  shapflow server start --postgres-dir ./pg --experiment digits
    Then from each node:  ssh -N -L 5000:127.0.0.1:5000 <server> &  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 ...
    """
    if (postgres_dir is None) == (backend_store_uri is None):
        raise click.UsageError("give exactly one of --postgres-dir and --backend-store-uri")
    require_extra("psycopg2", "shapflow server start (MLflow on PostgreSQL)")  # before anything starts
    from shapflow.services.lifetime import stop_on_signals
    from shapflow.services.server import describe_exposure, start_mlflow_server, start_postgres
    from shapflow.tracking import open_tracker

    try:
        exposure = describe_exposure(host, port, allow_remote)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    with stop_on_signals():  # SIGTERM/SIGHUP too run the finally blocks that stop MLflow and PostgreSQL
        postgres = start_postgres(postgres_dir, port=None) if postgres_dir else None
        try:
            server = start_mlflow_server(backend_store_uri or postgres.uri, artifacts, host=host, port=port)
            try:
                for name in experiments:
                    open_tracker(name, server.uri)
                click.echo(f"MLFLOW_TRACKING_URI={server.uri}  (backend {backend_store_uri or postgres.uri}); "
                           f"Ctrl-C stops")
                if exposure:
                    click.echo(exposure, err=True)
                with contextlib.suppress(KeyboardInterrupt):
                    while server.process.poll() is None:
                        time.sleep(1)
            finally:
                server.stop()
        finally:
            if postgres:
                postgres.stop()


@click.group("coalitions")
def coalitions_group() -> None:
    """Coalitions as batch jobs, for clusters without Ray: prepare once, then one job per coalition."""


@coalitions_group.command("emit")
@attribute_options
@click.option("--format", "fmt", type=click.Choice(["slurm", "lines"]), default="lines", show_default=True)
def coalitions_emit(fmt: str, **options) -> None:
    """Print one command per planned coalition (``lines``) or a Slurm job-array script (``slurm``).

    \b
    Example:  shapflow coalitions emit --use-case digits --format slurm > sweep.sbatch && sbatch sweep.sbatch
    Run the printed ``prepare`` command once first (stages, endpoints, experiment: parallel first writes race).
    """
    request = request_from(**options)
    from shapflow.attribution import plan
    from shapflow.execution.batch import batch_commands, slurm_array

    rows = len(plan(request))  # a sampler may plan fewer rows than the budget (permutation, loo)
    if fmt == "slurm":
        click.echo(slurm_array(options, rows, request.cfg.name))
        return
    prepare, commands = batch_commands(options, rows)
    click.echo("\n".join([f"# once first: {prepare}", *commands]))


@coalitions_group.command("prepare")
@attribute_options
def coalitions_prepare(**options) -> None:
    """Get-or-run the experiment, stages and endpoint runs, evaluating no coalition (before fanning out)."""
    request = request_from(**options)
    from shapflow.attribution import run_attribute

    result = run_attribute(request, progress=False, batch=slice(0, 0))
    click.echo(f"prepared study {result.study_id[:12]} (run {result.run_id})")


@coalitions_group.command("run")
@click.option("--index", type=WHOLE, required=True, help="The coalition (row of the sampler's plan) to evaluate.")
@attribute_options
def coalitions_run(index: int, **options) -> None:
    """Evaluate coalition ``index`` unless it already has a FINISHED run (idempotent; safe to resubmit)."""
    request = request_from(**options)
    from shapflow.attribution import batch_of, run_attribute

    batch = batch_of(request, index, index + 1)  # an index outside the plan exits 2 before any run is opened
    result = run_attribute(request, progress=False, batch=batch)
    click.echo(f"coalition {index}: {result.evaluated_now} evaluated now (study {result.study_id[:12]})")
