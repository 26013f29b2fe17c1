"""`hypoderm` command line: finds the command in argv and runs it.

Each command is one module of `hypoderm.commands`, which defines

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int

Only the module of the command being run is imported, and a command module imports the library (torch, for the
commands that train or measure models) only inside `run`: `hypoderm predict --model x.onnx` never imports torch,
every `--help` answers at once (tests/commands/test_cli.py), and a slow import in one command never slows the others.

The plain install (`pip install hypoderm`, `make run`) has only what `serve` and `predict` with an ONNX model import;
the commands that train or measure models need the `train` extra (pyproject.toml). Without it they stop at once with
exit code 2 and say how to install it, instead of a traceback (or, worse, after an hour of training).

Exit codes: 0 done, 2 a user error (a HypodermError: one line, no traceback; some commands give their own codes),
3 hypoderm itself crashed (any other exception: a bug; its traceback is printed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator

from hypoderm.errors import HypodermError, MissingExtraError

EXIT_CRASH = 3  # as `hypoderm predict` (hypoderm.commands.predict.EXIT_CODES)

# command words -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("models",): ("hypoderm.commands.models", "list every model with its parameter count"),
    ("bench",): ("hypoderm.commands.bench", "parameters, MACs/FLOPs, receptive field and latency, side by side"),
    ("data", "audit"): ("hypoderm.commands.data_audit",
                        "audit a dataset: counts, sizes, unreadable files, duplicates, leakage"),
    ("data", "split"): ("hypoderm.commands.data_split", "write a stratified, group-aware split file"),
    ("data", "lesion-free"): ("hypoderm.commands.data_lesion_free",
                              "cut lesion-free skin from lesion photos with masks, as normal-skin training photos"),
    ("data", "import", "scin"): ("hypoderm.commands.data_import_scin",
                                 "build a training set from Google's SCIN dataset"),
    ("train",): ("hypoderm.commands.train", "train a model on an image folder or CSV manifest"),
    ("evaluate",): ("hypoderm.commands.evaluate", "evaluate a checkpoint on a split or an external folder"),
    ("cv",): ("hypoderm.commands.cv", "k-fold cross-validation of one model"),
    ("compare",): ("hypoderm.commands.compare", "the comparison study: many models, same protocol, one table"),
    ("export",): ("hypoderm.commands.export", "export a checkpoint to ONNX (fp32 / INT8) with metadata"),
    ("predict",): ("hypoderm.commands.predict", "diagnose photos: top-k, uncertainty, not-skin rejection, Grad-CAM"),
    ("serve",): ("hypoderm.commands.serve", "the mobile diagnosis web app and JSON API"),
}

# The commands that run the training stack, and the modules of the `train` extra (pyproject.toml) that they import.
NEEDS_TRAIN_EXTRA = {("models",), ("bench",), ("data", "audit"), ("data", "split"), ("train",), ("evaluate",),
                     ("cv",), ("compare",), ("export",)}
TRAIN_EXTRA_MODULES = ("torch", "torchvision", "sklearn", "scipy", "onnxslim", "matplotlib", "imagehash")


def _not_installed(modules: tuple[str, ...]) -> list[str]:
    """The modules of `modules` that cannot be imported because they are not installed (found without importing)."""
    import importlib.util

    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def _missing_extra(words: tuple[str, ...], missing: list[str]) -> MissingExtraError:
    return MissingExtraError(f"hypoderm {' '.join(words)} needs the training extras: pip install 'hypoderm[train]' "
                             f"(in a checkout: make setup); not installed: {', '.join(missing)}")


def _usage(group: tuple[str, ...] = ()) -> str:
    """The commands (those starting with the words `group`, e.g. ("data",)) with their one-line help."""
    lines = [f"usage: hypoderm {' '.join((*group, 'COMMAND'))} [options]", "", "commands:"]
    for words, (_, help_text) in COMMANDS.items():
        if words[: len(group)] == group:
            lines.append(f"  {' '.join(words):<20} {help_text}")
    lines += ["", "Run `hypoderm COMMAND --help` for the options of one command.",
              "hypoderm is a decision aid for clinicians, not a medical device."]
    return "\n".join(lines)


def _match(argv: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """Longest command whose words start argv."""
    for words in sorted(COMMANDS, key=len, reverse=True):
        if tuple(argv[: len(words)]) == words:
            return words, argv[len(words):]
    return None


def _group(argv: list[str]) -> tuple[tuple[str, ...], list[str]] | None:
    """(the longest run of argv's first words that begins longer commands, e.g. ("data",), the rest) or None."""
    for n in range(len(argv), 0, -1):
        words = tuple(argv[:n])
        if any(len(w) > n and w[:n] == words for w in COMMANDS):
            return words, argv[n:]
    return None


def _parser(words: tuple[str, ...]) -> argparse.ArgumentParser:
    module_name, help_text = COMMANDS[words]
    parser = argparse.ArgumentParser(prog="hypoderm " + " ".join(words), description=help_text)
    importlib.import_module(module_name).add_arguments(parser)
    return parser


@contextlib.contextmanager
def _own_warnings_in_words(command: str) -> Iterator[None]:
    """While the command runs, hypoderm's own warnings (a class with fewer groups than folds, ...) are one line for
    people, "hypoderm train: warning: ...", not Python's "/path/splits.py:284: UserWarning: ..." with the source
    line under it; any other library's warnings keep Python's form. The hook is put back afterwards (main is also
    called in-process, e.g. by tests)."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202 - warnings' hook
        if issubclass(category, UserWarning) and f"{os.sep}hypoderm{os.sep}" in str(filename):
            print(f"hypoderm {command}: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = default


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from hypoderm import __version__

        print(f"hypoderm {__version__}")
        return 0
    found = _match(argv)
    group = _group(argv) if found is None else None
    if group is not None and (not group[1] or group[1][0] in ("-h", "--help")):
        # `hypoderm data --help` lists the data commands; `hypoderm data` alone is missing its command
        print(_usage(group[0]), file=sys.stdout if group[1] else sys.stderr)
        return 0 if group[1] else 2
    if found is None:
        prefix = [w for w in COMMANDS if w[0] == argv[0]]
        valid = ", ".join(" ".join(w) for w in (prefix or COMMANDS))
        print(f"hypoderm: unknown command {' '.join(argv[:3])!r}; valid commands: {valid}", file=sys.stderr)
        return 2
    words, rest = found
    args = _parser(words).parse_args(rest)
    module = importlib.import_module(COMMANDS[words][0])
    with _own_warnings_in_words(" ".join(words)):
        try:
            missing = _not_installed(TRAIN_EXTRA_MODULES) if words in NEEDS_TRAIN_EXTRA else []
            if missing:
                raise _missing_extra(words, missing)
            return int(module.run(args) or 0)
        except MissingExtraError as e:  # its message names the command (`predict` given a .pt checkpoint says it too)
            print(e, file=sys.stderr)
            return e.exit_code
        except HypodermError as e:  # a user error: one line, no traceback (hypoderm.errors)
            print(f"hypoderm {' '.join(words)}: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `hypoderm models | head`: the reader left; not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except Exception:  # a bug, not the user's doing: its traceback, then the exit code that says so
            traceback.print_exc()
            print(f"hypoderm {' '.join(words)}: internal error (a bug in hypoderm; exit code {EXIT_CRASH}); please "
                  "report it with the traceback above", file=sys.stderr)
            return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
