"""The one error base of hypoderm.

Every error that is the user's to fix (a bad option, an unreadable or invalid input, a model or data set that
cannot be used) is a `HypodermError`; the modules define their own subclasses (DatasetError, TrainError,
ModelLoadError, ExportError, ...), which also keep a builtin base (ValueError, RuntimeError) for callers that
catch those. `hypoderm.cli.main` catches HypodermError once, prints `hypoderm <command>: error: <message>`
(no traceback) and returns `exit_code`: 2 for a user error, unless the error says otherwise (e.g. 1 when
`export` refuses a broken checkpoint). Anything else that escapes a command is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR = 2


class HypodermError(Exception):
    """A user error; `str(e)` says what is wrong and how to fix it, `exit_code` is what the CLI returns."""

    exit_code: int = USER_ERROR

    def __init__(self, *args: object, exit_code: int | None = None) -> None:
        super().__init__(*args)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(HypodermError, ValueError):
    """A bad option value or combination, found by a command before (or while) it calls the library."""


class MissingExtraError(HypodermError, ImportError):
    """The command needs packages of an optional extra (e.g. the training stack, `hypoderm[train]`) that are not
    installed; the message names them and the install command."""


@contextmanager
def user_errors(*builtin: type[Exception]) -> Iterator[None]:
    """Report the `builtin` exceptions (e.g. ValueError) that the library raises for bad input as user errors
    (UsageError, exit code 2); HypodermErrors pass through unchanged."""
    try:
        yield
    except HypodermError:
        raise
    except builtin as e:
        raise UsageError(str(e)) from e
