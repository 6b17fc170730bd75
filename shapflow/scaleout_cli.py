"""Scale-out commands of the ``shapflow`` CLI: executor options, ``server start``, ``coalitions emit/run``.

``--executor/--ray-address/--num-gpus/--max-retries`` are exported as ``SHAPFLOW_*`` environment variables
(read by ``shapflow.executors.ExecutorSpec.from_env``), so ``shapflow run``, the MLproject scripts and
batch commands all pick the executor the same way without widening the attribution request.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from pathlib import Path

import click

__all__ = ["coalitions_group", "executor_options", "register", "server_group"]


def _export(name: str):
    def callback(_ctx: click.Context, _param: click.Parameter, value: object) -> None:
        if value is not None:
            os.environ[name] = str(value)
    return callback


def executor_options() -> list:
    """Click options selecting where coalitions run; their values go to the environment, not the command."""
    return [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     envvar="SHAPFLOW_EXECUTOR", expose_value=False, callback=_export("SHAPFLOW_EXECUTOR"),
                     help="local processes (--workers) or one Ray task per coalition."),
        click.option("--ray-address", default=None, envvar="SHAPFLOW_RAY_ADDRESS", expose_value=False,
                     callback=_export("SHAPFLOW_RAY_ADDRESS"),
                     help="Ray cluster address (ray://host:10001, auto, local) [default: a new local cluster]."),
        click.option("--num-gpus", type=float, default=None, envvar="SHAPFLOW_RAY_NUM_GPUS", expose_value=False,
                     callback=_export("SHAPFLOW_RAY_NUM_GPUS"), help="GPUs per Ray task, fractional (e.g. 0.25)."),
        click.option("--max-retries", type=int, default=None, envvar="SHAPFLOW_RAY_MAX_RETRIES",
                     expose_value=False, callback=_export("SHAPFLOW_RAY_MAX_RETRIES"),
                     help="Retries of a Ray task whose worker died [default: 3]."),
    ]


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
    from shapflow.procs import stop_on_signals
    from shapflow.services import describe_exposure, start_mlflow_server, start_postgres
    from shapflow.tracking import open_tracker

    if (postgres_dir is None) == (backend_store_uri is None):
        raise click.UsageError("give exactly one of --postgres-dir and --backend-store-uri")
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


_REQUEST: list = []  # shapflow.cli._request, handed over by ``register``


def register(main: click.Group, attribute_options, request) -> None:
    """Attach ``server`` and ``coalitions`` to ``main``; the batch commands take ``attribute_options``."""
    if not coalitions_group.commands:
        _REQUEST.append(request)
        for command in (coalitions_emit, coalitions_prepare, coalitions_run):
            coalitions_group.add_command(attribute_options(command))
    main.add_command(server_group)
    main.add_command(coalitions_group)


@click.command("emit")
@click.option("--format", "fmt", type=click.Choice(["slurm", "lines"]), default="lines", show_default=True)
def coalitions_emit(fmt: str, **options) -> None:
    """Print one command per planned coalition (``lines``) or a Slurm job-array script (``slurm``).

    \b
    Example:  shapflow coalitions emit --use-case digits --format slurm > sweep.sbatch && sbatch sweep.sbatch
    Run the printed ``prepare`` command once first (stages, endpoints, experiment: parallel first writes race).
    """
    request = _REQUEST[0](**options)
    flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in options.items()
             if v is not None and v is not False and v != ""]
    base = "shapflow coalitions run " + " ".join(shlex.quote(f) for f in flags)
    prepare = base.replace("coalitions run", "coalitions prepare", 1)
    if fmt == "lines":
        click.echo(f"# once first: {prepare}")
        for index in range(request.budget):
            click.echo(f"{base} --index {index}")
        return
    click.echo("\n".join(["#!/bin/bash", f"#SBATCH --job-name=shapflow-{request.cfg.name}",
                          f"#SBATCH --array=0-{request.budget - 1}", "#SBATCH --cpus-per-task=1",
                          f"# once first: {prepare}", f"{base} --index $SLURM_ARRAY_TASK_ID"]))


@click.command("prepare")
def coalitions_prepare(**options) -> None:
    """Get-or-run the experiment, stages and endpoint runs, evaluating no coalition (before fanning out)."""
    from shapflow.attribute import run_attribute

    result = run_attribute(_REQUEST[0](**options), progress=False, batch=slice(0, 0))
    click.echo(f"prepared study {result.study_id[:12]} (run {result.run_id})")


@click.command("run")
@click.option("--index", type=int, required=True, help="The coalition (row of the sampler's plan) to evaluate.")
def coalitions_run(index: int, **options) -> None:
    """Evaluate coalition ``index`` unless it already has a FINISHED run (idempotent; safe to resubmit)."""
    from shapflow.attribute import run_attribute

    result = run_attribute(_REQUEST[0](**options), progress=False, batch=slice(index, index + 1))
    click.echo(f"coalition {index}: {result.evaluated_now} evaluated now (study {result.study_id[:12]})")
