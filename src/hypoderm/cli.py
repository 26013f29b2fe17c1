"""`hypoderm` command line.

Each sub-command lives in its own module, which defines

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int

Only the module of the command being run is imported, so `hypoderm predict --model x.onnx`
never imports torch, and a slow import in one command never slows the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command words -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("models",): ("hypoderm.models.listing", "list every model with its parameter count"),
    ("bench",): ("hypoderm.bench", "parameters, MACs/FLOPs, receptive field and latency, side by side"),
    ("data", "audit"): ("hypoderm.data.audit", "audit a dataset: counts, sizes, unreadable files, duplicates, leakage"),
    ("data", "split"): ("hypoderm.data.splits", "write a stratified, group-aware split file"),
    ("data", "import", "scin"): ("hypoderm.data.scin.importer", "build a training set from Google's SCIN dataset"),
    ("train",): ("hypoderm.engine.train", "train a model on an image folder or CSV manifest"),
    ("evaluate",): ("hypoderm.engine.evaluate", "evaluate a checkpoint on a split or an external folder"),
    ("cv",): ("hypoderm.engine.cv", "k-fold cross-validation of one model"),
    ("compare",): ("hypoderm.compare", "the comparison study: many models, same protocol, one table"),
    ("export",): ("hypoderm.export.bundle", "export a checkpoint to ONNX (fp32 / INT8) with metadata"),
    ("predict",): ("hypoderm.predict", "diagnose photos: top-k, uncertainty, not-skin rejection, Grad-CAM"),
    ("serve",): ("hypoderm.app.server", "the mobile diagnosis web app and JSON API"),
}


def _usage() -> str:
    lines = ["usage: hypoderm COMMAND [options]", "", "commands:"]
    for words, (_, help_text) in COMMANDS.items():
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
    if found is None:
        prefix = [w for w in COMMANDS if w[0] == argv[0]]
        valid = ", ".join(" ".join(w) for w in (prefix or COMMANDS))
        print(f"hypoderm: unknown command {' '.join(argv[:3])!r}; valid commands: {valid}", file=sys.stderr)
        return 2
    words, rest = found
    module_name, help_text = COMMANDS[words]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="hypoderm " + " ".join(words), description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hypoderm models | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
