"""The one error base of hypoderm.

Every error that is the user's to fix (a bad option, an unreadable or invalid input, a model or data set that
cannot be used) is a `HypodermError`; the modules define their own subclasses (DatasetError, TrainError,
ModelLoadError, ExportError, ...), which also keep a builtin base (ValueError, RuntimeError) for callers that
catch those. `hypoderm.cli.main` catches HypodermError once, prints `hypoderm <command>: error: <message>`
(no traceback) and returns `exit_code`: 2 for a user error, unless the error says otherwise (e.g. 1 when
`export` refuses a broken checkpoint). Raise them where an input is validated; a builtin error (ValueError, ...) that
escapes a command is a bug, never turned into a user error: `cli.main` prints its traceback and returns 3.
"""

from __future__ import annotations

import pickle
import re

USER_ERROR = 2


class HypodermError(Exception):
    """A user error; `str(e)` says what is wrong and how to fix it, `exit_code` is what the CLI returns."""

    exit_code: int = USER_ERROR

    def __init__(self, *args: object, exit_code: int | None = None) -> None:
        super().__init__(*args)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(HypodermError, ValueError):
    """A bad option value or combination: a flag a command checks, a training config value, a model name."""


class MissingExtraError(HypodermError, ImportError):
    """The command needs packages of an optional extra (e.g. the training stack, `hypoderm[train]`) that are not
    installed; the message names them and the install command."""


def torch_load_failure(e: BaseException) -> str:
    """Why `torch.load(weights_only=True)` failed, in one short line: torch's own message is several lines long and
    ends by suggesting weights_only=False, which would run code from the file; that advice is never passed on."""
    detail = re.search(r"error:\s*\n+\s*(.+)", str(e))  # e.g. "Unsupported operand 103" for a non-pickle
    if isinstance(e, pickle.UnpicklingError):
        return detail.group(1).strip() if detail else type(e).__name__
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first and "weights_only" not in first else type(e).__name__
