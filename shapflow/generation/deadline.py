"""A time limit that binds inside sampling: ``with deadline(seconds):`` makes every DDIM step (and any caller's own
``check_deadline()``) raise ``DeadlineExceeded`` once the time is up, so one slow image cannot run past a served
request's limit. Outside such a block the check is one context-variable read: training and evaluation never stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["DeadlineExceeded", "check_deadline", "deadline"]


@dataclass
class _Budget:
    ends: float  # time.monotonic() past which work stops
    steps: int = 0  # denoising steps checked (and so started) under this deadline


_CURRENT: ContextVar[_Budget | None] = ContextVar("shapflow_deadline", default=None)


class DeadlineExceeded(RuntimeError):
    """The time of a ``deadline`` block ran out; ``steps``: the denoising steps done before it did."""

    def __init__(self, steps: int) -> None:
        super().__init__(f"time limit reached after {steps} denoising steps")
        self.steps = steps


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Stop the sampling inside this block ``seconds`` from now (``check_deadline`` raises past it)."""
    token = _CURRENT.set(_Budget(time.monotonic() + seconds))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def check_deadline(step: bool = False) -> None:
    """Raise ``DeadlineExceeded`` if the enclosing ``deadline`` has passed; ``step``: count one denoising step."""
    budget = _CURRENT.get()
    if budget is None:
        return
    if time.monotonic() > budget.ends:
        raise DeadlineExceeded(budget.steps)
    budget.steps += step
