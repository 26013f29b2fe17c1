"""`hypoderm predict`: diagnose photos (hypoderm.inference.files; a `.pt` checkpoint through
hypoderm.export.checkpoint_predictor, imported only for one); text for people or one JSON document
(docs/PREDICT_SCHEMA.md).

Exit codes (EXIT_CODES): 0 every file predicted, 1 some files failed (each has its error), 2 usage or model
error, 3 hypoderm itself crashed (a bug: please report it).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypoderm.commands import path_arg
from hypoderm.errors import HypodermError, UsageError

if TYPE_CHECKING:
    from hypoderm.inference.files import Predictor

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3
EXIT_CODES = """exit codes:
  0  every file was predicted
  1  some files failed; each has status "error" with its reason, the others are predicted
  2  usage or model error (bad option, model missing or unreadable); nothing on stdout
  3  hypoderm itself crashed (a bug; the traceback is on stderr): please report it"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXIT_CODES + "\n\nJSON output (--json): docs/PREDICT_SCHEMA.md"
    parser.add_argument("images", nargs="+", type=path_arg, metavar="IMAGE", help="image files or folders")
    parser.add_argument("--model", type=path_arg,
                        help="a .pt checkpoint, an exported .onnx, or a folder holding model.onnx "
                             "(default: the bundled model)")
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to list (default 3)")
    parser.add_argument("--cam", type=path_arg, metavar="DIR",
                        help="write Grad-CAM overlay PNGs here (made if missing), over each photo at most 512 px "
                             "on its longer side, for each photo given an "
                             "answer (status ok; none for an uncertain or refused photo), from the model's own "
                             "Grad-CAM outputs: the bundled model and `hypoderm export` models have them; a .pt "
                             "checkpoint works too")
    parser.add_argument("--json", action="store_true", help="print one JSON document (docs/PREDICT_SCHEMA.md)")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads (default 1: the next photo is decoded in a second "
                             "thread meanwhile; more ORT threads mostly spin, measured in benchmarks/app/README.md)")


def run(args: argparse.Namespace) -> int:
    """Exit code per EXIT_CODES; an unexpected exception becomes EXIT_CRASH with its traceback on stderr."""
    try:
        return _run(args)
    except (KeyboardInterrupt, BrokenPipeError, HypodermError):
        raise  # the CLI answers these (130, quiet exit; a user error: one line, exit code 2)
    except Exception:  # noqa: BLE001 - a crash must still be told apart from "some files failed"
        traceback.print_exc()
        print("hypoderm predict: internal error (a bug in hypoderm; exit code 3); please report it with the "
              "traceback above", file=sys.stderr)
        return EXIT_CRASH


def _error_summary(results: list[dict[str, Any]]) -> str | None:
    """'2 of 7 files not predicted: 1 not_a_file, 1 not_image.' (None when every file was predicted)."""
    reasons = Counter(r["reason"] for r in results if r["status"] == "error")
    if not reasons:
        return None
    counts = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    return f"{sum(reasons.values())} of {len(results)} files not predicted: {counts}."


def load_predictor(path: Path, threads: int | None) -> Predictor:
    """The predictor for a resolved model file (hypoderm.inference.model_path): an .onnx on ONNX Runtime, a .pt
    checkpoint on PyTorch (imported only here, so the plain install runs .onnx models)."""
    from hypoderm.inference import ModelLoadError, OnnxPredictor

    if path.suffix.lower() == ".onnx":
        return OnnxPredictor(path, threads=threads)
    try:
        from hypoderm.checkpoint import CheckpointError  # imports torch
    except ModuleNotFoundError as e:  # the plain install (`make run`) runs .onnx models only
        from hypoderm.errors import MissingExtraError

        raise MissingExtraError("hypoderm predict needs the training extras for a .pt checkpoint: pip install "
                                "'hypoderm[train]' (in a checkout: make setup), or give it the exported .onnx "
                                f"model; not installed: {e.name}") from e
    from hypoderm.export.checkpoint_predictor import TorchPredictor

    try:
        return TorchPredictor(path)
    except (CheckpointError, KeyError, ValueError, RuntimeError) as e:
        raise ModelLoadError(str(e)) from e


def _run(args: argparse.Namespace) -> int:
    from hypoderm import __version__
    from hypoderm.cards import limits_text
    from hypoderm.inference import DISCLAIMER
    from hypoderm.inference import files as lib
    from hypoderm.inference.model_path import CHECKPOINT, ONNX, resolve_model_path
    from hypoderm.model_quality import metadata_problems

    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    files, skipped, unlisted = lib.expand_inputs(args.images)
    if not files and not unlisted:  # only folders were given, and they hold no image: say so, not nothing
        extra = f"; {lib.skipped_note(skipped)}" if skipped else ""
        raise UsageError(f"no images found in {', '.join(str(p) for p in args.images)}{extra}")
    if args.cam is not None:
        _cam_folder(args.cam)
    # a model that cannot be found or loaded is a ModelLoadError: a user error, EXIT_USAGE
    model_path = resolve_model_path(args.model, ONNX + CHECKPOINT)
    predictor = load_predictor(model_path, args.threads)
    note = lib.cam_note(predictor) if args.cam is not None else None
    if note:
        print(note, file=sys.stderr)
    problems = metadata_problems(predictor.metadata)
    broken = (f"WARNING: this model failed its quality checks ("
              f"{'; '.join(p['message'] for p in problems)}); do not rely on its answers.") if problems else None
    results = lib.predict_files(predictor, files, args.top_k, args.cam)
    results += [lib.folder_error(folder, reason) for folder, reason in unlisted]
    skipped_note = lib.skipped_note(skipped)
    md = predictor.metadata
    if args.json:
        doc = {"format": lib.OUTPUT_FORMAT, "hypoderm_version": __version__,
               "model": {"path": str(model_path), "model_name": md.get("model_name"),
                         "version": md.get("version"), "precision": md.get("precision", "fp32"),
                         "class_names": list(md["class_names"]),
                         "abstain_threshold": float(md["abstain_threshold"]),
                         "answer_thresholds": {k: float(v) for k, v in (md.get("answer_thresholds") or {}).items()},
                         "temperature": float(md["temperature"]),
                         "problems": problems},
               "results": results, "notes": [n for n in (broken, note, skipped_note) if n], "disclaimer": DISCLAIMER}
        print(json.dumps(doc, indent=2, allow_nan=False))  # NaN is not JSON: fail loudly rather than print it
    else:
        if broken:
            print(broken)
        for r in results:
            print(lib.text_line(r, list(md["class_names"])))
        if any(r["status"] in ("ok", "uncertain") for r in results):  # once per run, not under every photo
            print(limits_text(list(md["class_names"]), lib.limits_label(results)))
        for line in (_error_summary(results), skipped_note):
            if line:
                print(line)
        print(DISCLAIMER)
    return EXIT_SOME_FAILED if any(r["status"] == "error" for r in results) else EXIT_OK


def _cam_folder(folder: Path) -> None:
    """--cam DIR is made (with its parents) before any photo is run, so that a path that is a file or cannot be
    written is one usage error, not a failure under every photo."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--cam {folder}: that is a file, not a folder (give a folder for the heat maps)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--cam {folder}: cannot make that folder ({e.strerror or e})") from e
