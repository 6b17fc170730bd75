"""Coalitions as batch jobs for clusters without Ray: one shell command per planned coalition, or a Slurm job
array running them. A prepare command (stages, endpoints, experiment) runs once first: parallel first writes
to a fresh store race."""

from __future__ import annotations

import shlex

__all__ = ["batch_commands", "slurm_array"]


def _flags(options: dict[str, object]) -> str:
    """``--name=value`` flags of the options that are set (True: a bare flag), shell-quoted."""
    flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in options.items()
             if v is not None and v is not False and v != ""]
    return " ".join(shlex.quote(flag) for flag in flags)


def batch_commands(options: dict[str, object], count: int) -> tuple[str, list[str]]:
    """(the prepare command, one ``shapflow coalitions run`` command per coalition index < ``count``)."""
    flags = _flags(options)
    return (f"shapflow coalitions prepare {flags}",
            [f"shapflow coalitions run {flags} --index {index}" for index in range(count)])


def slurm_array(options: dict[str, object], count: int, name: str) -> str:
    """A Slurm job-array script: one one-CPU task per coalition index (run its prepare command once first)."""
    flags = _flags(options)
    return "\n".join(["#!/bin/bash", f"#SBATCH --job-name=shapflow-{name}", f"#SBATCH --array=0-{count - 1}",
                      "#SBATCH --cpus-per-task=1", f"# once first: shapflow coalitions prepare {flags}",
                      f"shapflow coalitions run {flags} --index $SLURM_ARRAY_TASK_ID"])
