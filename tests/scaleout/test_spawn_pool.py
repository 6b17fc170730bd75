"""The local executor's process pool: every task once, in any order; a caller that stops early cancels the rest."""

import os
import subprocess

from shapflow.execution.local import spawn_pool


def _marker_command(folder, index: int, seconds: float) -> tuple:
    """A task for subprocess.call (a stdlib function, so the spawned workers can unpickle it): leave a file, wait."""
    return (["sh", "-c", f"touch {folder}/task-{index}; sleep {seconds}"],)


def test_spawn_pool_runs_every_task_once(tmp_path):
    tasks = [_marker_command(tmp_path, i, 0) for i in range(5)]
    codes = list(spawn_pool(subprocess.call, tasks, workers=2, initializer=os.getpid, initargs=()))
    assert codes == [0] * 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"task-{i}" for i in range(5)]


def test_stopping_early_cancels_the_tasks_not_yet_started(tmp_path):
    tasks = [_marker_command(tmp_path, i, 0.5) for i in range(8)]
    results = spawn_pool(subprocess.call, tasks, workers=1, initializer=os.getpid, initargs=())
    assert next(results) == 0
    results.close()  # what an error in the caller's loop does to the generator
    # besides the first task, only those the pool had already handed on ran: the one running and the
    # workers + 1 in its call queue; without the cancellation all 8 would run before close() returned
    assert 1 <= len(list(tmp_path.iterdir())) <= 4 < len(tasks)
