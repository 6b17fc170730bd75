"""The one error boundary of every entry point (``shapflow`` and the MLproject scripts in ``pipelines/``).

A user error becomes one line naming the thing and the fix, and exit status 2, never a traceback: bad config
values, overrides and YAML (``ConfigError``), data files (``DataError``), model folders (``ModelFileError``),
unknown experiments, missing assets, files that are not there, registry names that do not exist, and option
values the parser rejects, a damaged store or a full disk. Everything else is a bug and keeps its traceback.

This module and ``cli.main`` import only Click and ``shapflow.config`` at the top, so a user error is answered
in well under 2 s. No MLflow here: ``shapflow.tracking`` turns MLflow's lookup errors into ``InputError``s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from shapflow.config import InputError

__all__ = ["USER_ERRORS", "WHOLE", "BoundaryGroup", "UserError", "WholeNumber", "user_errors"]

# MissingAssetsError is a FileNotFoundError (with no filename: its message is the check table)
USER_ERRORS = (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class UserError(click.ClickException):
    """A user error as Click prints it: ``Error: <message>``, exit status 2."""

    exit_code = 2


def message_of(err: BaseException) -> str:
    """The message of a user error; an OS error without one of ours names its file and the fix."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}: check the path (and its permissions)"
    return str(err)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the user errors raised inside into ``UserError`` (message, exit 2)."""
    try:
        yield
    except USER_ERRORS as err:
        raise UserError(message_of(err)) from None
    except (click.ClickException, click.exceptions.Exit, click.Abort):  # Click's own answers and --help
        raise
    except Exception as err:  # a damaged store or a full disk, wherever it surfaced (tracking.faults)
        from shapflow.tracking import default_tracking_uri  # deferred: only this error path needs MLflow loaded
        from shapflow.tracking.faults import store_fault

        fault = store_fault(default_tracking_uri(), err)
        if fault is None:
            raise
        raise UserError(str(fault)) from None


class BoundaryGroup(click.Group):
    """A Click group whose commands (and sub-groups) report user errors through ``user_errors``."""

    def invoke(self, ctx: click.Context) -> object:
        with user_errors():
            return super().invoke(ctx)


class WholeNumber(click.ParamType):
    """An integer option that also takes an integral float (``20.0``: MLproject declares these parameters as
    floats) and refuses any other value with the fix."""

    name = "integer"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if number.is_integer():
            return int(number)
        self.fail(f"{value!r} is not a whole number: give an integer such as 20 (20.0 is accepted, 20.5 is not)",
                  param, ctx)


WHOLE = WholeNumber()  # counts and seeds: MLproject passes its float parameters as e.g. "20.0"
