"""Where coalition evaluations and retrainings run: this process, spawned worker processes (``local``), or Ray
tasks (``ray``). ``ExecutorSpec`` is the choice, a field of every request; ``evaluate_many`` dispatches on it."""

from shapflow.execution.dispatch import EXECUTORS, ExecutorSpec, evaluate_many
from shapflow.execution.local import Lookup, Outcome, spawn_pool

__all__ = ["EXECUTORS", "ExecutorSpec", "Lookup", "Outcome", "evaluate_many", "spawn_pool"]
