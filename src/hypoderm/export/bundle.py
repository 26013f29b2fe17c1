"""`hypoderm export CHECKPOINT --out PATH [--format onnx|torchscript] [--int8 --calibration DIR] [--int8-weights]`.

Writes `PATH` (e.g. model.onnx) + `PATH.json` sidecar, runs the ONNX Runtime vs PyTorch parity
check (fails with exit code 1 if max |dp| > 1e-4), and with `--int8` also `<stem>.int8.onnx`
with its fp32-agreement report: top-1 agreement, accuracy and macro-F1 of both models on the `--eval`
photos and on seeded close-ups of them (`--eval-closeups`), per view; the INT8 settings default to
the measured choice (benchmarks/export/README.md) and can be changed with the `--int8-*` options.
`--int8-weights` writes `<stem>.int8w.onnx` (INT8-stored weights, fp32 compute once loaded) with the same report.
A JSON report of everything lands in `<stem>.export-report.json`.

The work is `export_bundle(ExportOptions(...))`, callable from Python with the same result as the
command (it returns the report); `run` only turns the parsed flags into `ExportOptions` and prints.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypoderm.data.dataset import IMAGE_EXTENSIONS
from hypoderm.errors import HypodermError
from hypoderm.imaging.files import walk_folder


@dataclass
class ExportOptions:
    """What `hypoderm export` takes: one field per flag (the argparse destinations; the flags read their defaults
    here: hypoderm.commands.options.add_export_arguments)."""

    checkpoint: Path
    out: Path
    format: str = "onnx"
    int8: bool = False
    calibration: Path | None = None
    eval_dir: Path | None = None
    opset: int = 17
    no_simplify: bool = False
    max_logit_floor: bool = False
    ood_quantile: float = 0.01
    max_images: int = 256
    force: bool = False
    int8_gradcam: bool = False
    int8_weights: bool = False
    eval_closeups: int = 3
    no_skin_check: bool = False
    # "CLASS=P": that class is answered only at probability >= P (model.json `answer_thresholds`;
    # hypoderm.inference.verdict.answer_threshold)
    answer_threshold: list[str] | None = None


class ExportError(HypodermError, RuntimeError):
    """A user-facing export failure; `exit_code` is what `hypoderm export` returns (2: bad input,
    1: a broken checkpoint refused or a failed parity check)."""


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _quiet(message: str) -> None:
    """Progress lines are dropped by default: the returned report holds the same facts."""


def list_images(folder: Path, class_names: list[str]) -> tuple[list[Path], list[int] | None]:
    """Image files under `folder` (sorted, recursive); labels when every file sits in a sub-folder
    named after a class."""
    entries, unlisted = walk_folder(folder)  # iterative: no RecursionError on a deep folder
    if unlisted:
        raise ValueError("; ".join(f"{f}: {why}" for f, why in unlisted))
    files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    index = {c: i for i, c in enumerate(class_names)}
    parents = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else "" for p in files]
    labels = [index[c] for c in parents] if files and all(c in index for c in parents) else None
    return files, labels


def calibration_files(source: Path, class_names: list[str]) -> tuple[list[Path], list[int] | None]:
    """Images (and labels, when every one names a class of the model) from a folder or from a CSV
    manifest in `train`'s format (hypoderm.data.dataset.load_index). Raises ValueError with the reason."""
    if source.is_dir():
        return list_images(source, class_names)
    if source.is_file() and source.suffix.lower() == ".csv":
        from hypoderm.data.dataset import load_index

        # the files named on this command line are read, wherever they lie: scripts/fold_manifest.py writes
        # absolute paths (a training manifest must stay in its folder: `train --allow-outside-paths`)
        index = load_index(source, allow_outside_paths=True)  # DatasetError names the bad row or column
        files = [s.path for s in index.samples]
        ids = {c: i for i, c in enumerate(class_names)}
        labels = [ids[s.label] for s in index.samples] if all(s.label in ids for s in index.samples) else None
        return files, labels
    raise ValueError(f"{source} is neither a folder of images nor a .csv manifest (path,label[,...])")


def _load_images(files: list[Path], labels: list[int] | None, limit: int,
                 warn: Callable[[str], None] = _to_stderr) -> tuple[list[Any], list[int] | None, list[Path]]:
    """(images, their labels, their files) of at most `limit` files, evenly spaced over the list (which is
    sorted by class, so every class keeps its share; the first `limit` would often be one class); unreadable
    ones are skipped with a warning."""
    from hypoderm.inference import load_image

    step = max(len(files) / limit, 1.0) if limit > 0 else 1.0
    chosen = sorted({min(int(k * step), len(files) - 1) for k in range(min(limit, len(files)))})
    images, kept = [], []
    for i in chosen:
        f = files[i]
        try:
            images.append(load_image(f))
            kept.append(i)
        except (ValueError, OSError) as e:
            warn(f"warning: skipping {f}: {e}")
    return images, ([labels[i] for i in kept] if labels is not None else None), [files[i] for i in kept]


def _fit_ood(model: Any, images: list[Any], spec: Any, quantile: float) -> dict[str, Any]:
    import numpy as np
    import torch

    from hypoderm.inference.ood import fit_ood_thresholds
    from hypoderm.inference.preprocess import preprocess

    with torch.inference_mode():
        logits = torch.cat([model(torch.from_numpy(np.stack([preprocess(im, spec) for im in images[i: i + 32]])))
                            for i in range(0, len(images), 32)]).numpy()
    return fit_ood_thresholds(logits.max(axis=1), quantile=quantile)


def _closeup_inputs(images: list[Any], keys: list[str], spec: Any, n: int) -> list[Any]:
    """`n` close-up views per image as preprocessed CHW float32 arrays (what the INT8 report takes),
    seeded by `keys` so that every export sees the same crops."""
    import numpy as np
    import torch

    from hypoderm.engine.styleshift import closeups
    from hypoderm.inference.preprocess import normalize_uint8, resized_uint8

    out = []
    for im, key in zip(images, keys, strict=True):
        chw = torch.from_numpy(np.array(resized_uint8(im, spec))).permute(2, 0, 1)
        out.append([normalize_uint8(np.ascontiguousarray(c.permute(1, 2, 0).numpy()), spec)
                    for c in closeups(chw, spec.size, key, n=n)])
    return out


def _check_options(args: ExportOptions) -> None:
    """Refuse contradictory or impossible options before anything is loaded."""
    if args.int8 and args.format != "onnx":
        raise ExportError("--int8 applies to --format onnx only")
    if args.int8 and args.calibration is None:
        raise ExportError("--int8 needs --calibration DIR (real images to calibrate activation ranges)")
    for source in (args.calibration, args.eval_dir):
        if source is not None and not (source.is_dir() or (source.is_file() and source.suffix.lower() == ".csv")):
            what = "does not exist" if not source.exists() else "is neither a folder nor a .csv manifest"
            raise ExportError(f"{source} {what} (give a folder of images or a CSV manifest path,label[,...])")
    if args.eval_closeups < 0:
        raise ExportError(f"--eval-closeups must be >= 0, got {args.eval_closeups}")
    if args.format == "onnx" and args.out.suffix != ".onnx":
        raise ExportError(f"--out must end in .onnx, got {args.out}")


def answer_thresholds(items: list[str], class_names: list[str]) -> dict[str, float]:
    """`--answer-threshold CLASS=P` flags -> {class: P}; an ExportError names a malformed one, an unknown class or a
    P outside (0, 1]."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            p = float(value)
        except ValueError:
            p = float("nan")
        if not sep or not name:
            raise ExportError(f"--answer-threshold takes CLASS=P (e.g. vitiligo=0.8), got {item!r}")
        if name not in class_names:
            raise ExportError(f"--answer-threshold {item!r}: {name!r} is not a class of this model ({class_names})")
        if not 0.0 < p <= 1.0:  # NaN fails too
            raise ExportError(f"--answer-threshold {item!r}: P must be a probability in (0, 1]")
        out[name] = p
    return out


def _load_model(args: ExportOptions, warn: Callable[[str], None]) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """(checkpoint, model, metadata) of a checkpoint that is usable and not broken (or --force: marked)."""
    import torch

    from hypoderm.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
    from hypoderm.inference.metadata import metadata_from_checkpoint
    from hypoderm.model_quality import checkpoint_problems

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    try:
        ckpt = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint(ckpt)
        metadata = metadata_from_checkpoint(ckpt)
    except (CheckpointError, KeyError, ValueError, RuntimeError) as e:
        raise ExportError(f"cannot use checkpoint {args.checkpoint}: {e}") from e
    problems = checkpoint_problems(ckpt)
    if problems and not args.force:
        raise ExportError("\n".join([f"refusing to export {args.checkpoint}: it looks broken:",
                                     *(f"  - {p['message']}" for p in problems),
                                     "Train it longer or fix the data; pass --force to export it anyway (it will be "
                                     "marked as broken, and predict and serve will say so)."]), exit_code=1)
    metadata["quality"] = {"problems": problems, "forced": bool(problems)}
    if args.answer_threshold:
        metadata["answer_thresholds"] = answer_thresholds(args.answer_threshold, list(metadata["class_names"]))
    if "pretrained" in ckpt:  # the weights it started from ({"file", "sha256"}), null from scratch
        metadata["pretrained"] = ckpt["pretrained"]
    for p in problems:
        warn(f"warning: exporting despite: {p['message']} (--force); the model is marked")
    return ckpt, model, metadata


@dataclass
class _Images:
    """Decoded images with their labels (None without class folders / a label column) and files."""

    images: list[Any] = field(default_factory=list)
    labels: list[int] | None = None
    files: list[Path] = field(default_factory=list)


def _read_images(source: Path, option: str, class_names: list[str], limit: int,
                 warn: Callable[[str], None]) -> _Images:
    try:
        files, labels = calibration_files(source, class_names)
    except ValueError as e:
        raise ExportError(f"{option}: {e}") from e
    if not files and option == "--calibration":
        raise ExportError(f"no image files in {source}")
    images, kept_labels, kept_files = _load_images(files, labels, limit, warn)
    if not images and option == "--calibration":
        raise ExportError(f"none of the images in {source} could be read")
    return _Images(images, kept_labels, kept_files)


def _set_ood(metadata: dict[str, Any], model: Any, calib: list[Any], spec: Any, args: ExportOptions,
             warn: Callable[[str], None]) -> None:
    """The not-skin thresholds: the checkpoint's, else fitted on the calibration images, else the permissive
    default; the max-logit floor off unless --max-logit-floor; the image gate completed."""
    from hypoderm.inference.ood import DEFAULT_OOD, PERMISSIVE_MAX_LOGIT_MIN, with_gate

    if not metadata.get("ood"):
        if calib:
            metadata["ood"] = {**_fit_ood(model, calib, spec, args.ood_quantile),
                               "source": f"fitted at export on {len(calib)} images of {args.calibration}"}
        else:
            metadata["ood"] = {**DEFAULT_OOD, "source": "default: no thresholds in checkpoint, no --calibration"}
            warn("note: the checkpoint has no OOD thresholds and no --calibration was given; using the "
                 f"permissive default {DEFAULT_OOD} (skin-colour rule and the default not-skin gate)")
    if not args.max_logit_floor:
        metadata["ood"] = {**metadata["ood"], "max_logit_min": PERMISSIVE_MAX_LOGIT_MIN,
                           "max_logit_floor": "off (the default; --max-logit-floor turns it on)"}
    elif metadata["ood"].get("max_logit_min", PERMISSIVE_MAX_LOGIT_MIN) <= PERMISSIVE_MAX_LOGIT_MIN:
        warn("note: --max-logit-floor has no floor to apply: the checkpoint has none and no --calibration was "
             "given to fit one")
    metadata["ood"] = with_gate(metadata["ood"])


@dataclass
class _EvalSet:
    """What the INT8 models are compared with fp32 on: model inputs (photos, then close-ups), their view
    names and labels, where they came from, and which of them the calibration also saw."""

    inputs: list[Any]
    views: list[str]
    labels: list[int] | None
    source: Path
    shared: set[Path]


def _eval_set(args: ExportOptions, calib: _Images, class_names: list[str], spec: Any,
              warn: Callable[[str], None]) -> _EvalSet:
    source = args.eval_dir or args.calibration
    assert source is not None  # the caller checks
    if args.eval_dir is not None:
        held = _read_images(args.eval_dir, "--eval", class_names, 10 ** 9, warn)
        # weight-only INT8 is not calibrated on images: only static INT8 can have seen the --eval photos
        shared = ({f.resolve() for f in held.files} & {f.resolve() for f in calib.files}) if args.int8 else set()
        if shared:
            warn(f"warning: {len(shared)} of the --eval images are also --calibration images; the INT8 "
                 "comparison is fairest on photos the calibration did not see")
    else:
        shared = set(calib.files) if args.int8 else set()  # weight-only INT8 is not calibrated on images
        warn("note: no --eval given: INT8 is compared with fp32 on the --calibration images; give held-out "
             "photos with --eval for an honest comparison")
        held = calib
    inputs, views, labels = list(held.images), ["photo"] * len(held.images), held.labels
    if args.eval_closeups:
        root = Path(source)
        # seeded by the path inside the folder, as hypoderm.engine.styleshift does for a dataset
        keys = [f.relative_to(root).as_posix() if root.is_dir() and f.is_relative_to(root) else f.name
                for f in held.files]
        for i, group in enumerate(_closeup_inputs(held.images, keys, spec, args.eval_closeups)):
            inputs += group
            views += ["closeup"] * len(group)
            if labels is not None and held.labels is not None:
                labels = [*labels, *[held.labels[i]] * len(group)]
    return _EvalSet(inputs, views, labels, source, shared)


def _quantized_variants(out: Path, calib: _Images, class_names: list[str], spec: Any, args: ExportOptions,
                        log: Callable[[str], None], warn: Callable[[str], None]) -> dict[str, Any]:
    """The INT8 models asked for, each quantised in a staging folder, compared with fp32 there, and written
    beside `out` once with the comparison in its metadata. Returns their report entries."""
    from hypoderm.export.int8 import quantize_int8, quantize_weights_int8
    from hypoderm.inference.metadata import load_metadata, write_metadata

    ev = _eval_set(args, calib, class_names, spec, warn) if (args.eval_dir or args.calibration) else None
    if ev is None:
        warn("note: no --eval or --calibration images: the INT8-weights model is not compared with fp32")
    entries: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = {}
        if args.int8:
            # the settings measured on the bundled model (DEFAULT_SETTINGS); int8_sweep.py (benchmarks) tries others
            staged["int8"] = quantize_int8(out, calib.images, Path(tmp) / "int8.onnx", max_images=args.max_images,
                                           keep_gradcam=args.int8_gradcam)
        if args.int8_weights:
            staged["int8_weights"] = quantize_weights_int8(out, Path(tmp) / "int8w.onnx")
        for key, path in staged.items():
            final = out.with_name(out.stem + (".int8.onnx" if key == "int8" else ".int8w.onnx"))
            md = load_metadata(path)
            agree = _compare_variant(key, path, out, ev, args) if ev is not None else None
            write_metadata(final, {**md, **({"int8_vs_fp32": agree} if agree else {})}, source=path)
            entries[key] = _log_variant(key, final, out, md["quantization"], agree, log)
    return entries


def _attach_skin_check(paths: list[Path], log: Callable[[str], None],
                       warn: Callable[[str], None]) -> dict[str, Any] | None:
    """The shipped learned skin check put into every written model (hypoderm.export.skincheck)."""
    from hypoderm.export.skincheck import attach, shipped_skin_check

    shipped = shipped_skin_check()
    if shipped is None:
        warn("note: this install ships no skin check (assets/skin_check.onnx): the statistics gate alone refuses "
             "pictures that are not skin")
        return None
    check, block = shipped
    for path in paths:
        attach(path, check, block)
    log(f"skin check ({check.name}, {check.stat().st_size:,} bytes) added to {', '.join(p.name for p in paths)}")
    return {"file": check.name, "threshold": block["threshold"], "answer_threshold": block["answer_threshold"]}


def _compare_variant(key: str, path: Path, fp32: Path, ev: _EvalSet, args: ExportOptions) -> dict[str, Any]:
    """Agreement and accuracy of one INT8 model against fp32 on the evaluation set."""
    from hypoderm.export.int8 import agreement_report

    agree = agreement_report(fp32, path, ev.inputs, ev.labels, ev.views)
    agree["evaluated_on"] = str(ev.source)
    agree["held_out"] = args.eval_dir is not None and not ev.shared
    agree["eval_closeups_per_photo"] = args.eval_closeups
    return agree


def _log_variant(key: str, path: Path, fp32: Path, q: dict[str, Any], agree: dict[str, Any] | None,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Log one written INT8 model and its comparison with fp32; returns its report entry."""
    sizes = f"{path.stat().st_size / 1e6:.2f} MB vs fp32 {fp32.stat().st_size / 1e6:.2f} MB"
    if key == "int8":
        log(f"wrote {path} (INT8 {q['format']}, {q['weights']}, calibration {q['calibration']} on "
            f"{q['calibration_images']} images, fp32 layers: {', '.join(q['fp32_layer_groups']) or 'none'}; {sizes})")
    else:
        log(f"wrote {path} (INT8 weights only, {q['weights']}, fp32 activations, dequantised at load; {sizes})")
    if agree is None:
        return {"path": str(path), "bytes": path.stat().st_size, "fp32_bytes": fp32.stat().st_size, "settings": q}
    for name, r in [("all", agree), *agree.get("by_view", {}).items()]:
        line = f"  {name}: top-1 agreement with fp32 {r['top1_agreement']:.1%} on {r['images']} images"
        if "fp32" in r:
            line += (f"; accuracy fp32 {r['fp32']['accuracy']:.3f} vs int8 {r['int8']['accuracy']:.3f}, "
                     f"macro-F1 fp32 {r['fp32']['macro_f1']:.3f} vs int8 {r['int8']['macro_f1']:.3f} "
                     f"({r['delta_points']['macro_f1']:+.1f} points)")
        log(line)
    if "gradcam_correlation" in agree:
        log(f"  Grad-CAM maps, INT8 vs fp32: correlation mean {agree['gradcam_correlation']['mean']:.3f}, "
            f"min {agree['gradcam_correlation']['min']:.3f}")
    return {"path": str(path), "bytes": path.stat().st_size, "fp32_bytes": fp32.stat().st_size,
            "settings": q, **agree}


def export_bundle(args: ExportOptions, *, log: Callable[[str], None] = _quiet,
                  warn: Callable[[str], None] = _to_stderr) -> dict[str, Any]:
    """Export one checkpoint as `hypoderm export` does (OOD fitting, parity, INT8, report file) and
    return the report. Raises ExportError with the message the command prints; `log` gets the
    command's progress lines, `warn` its warnings and notes."""
    _check_options(args)
    ckpt, model, metadata = _load_model(args, warn)

    from hypoderm.export.onnx import ExportParityError, export_onnx_checked, export_torchscript
    from hypoderm.inference.preprocess import PreprocessSpec

    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    class_names = list(ckpt["class_names"])
    calib = (_read_images(args.calibration, "--calibration", class_names, args.max_images, warn)
             if args.calibration is not None else _Images())
    _set_ood(metadata, model, calib.images, spec, args, warn)
    report: dict[str, Any] = {"checkpoint": str(args.checkpoint),
                              "ood": {k: v for k, v in metadata["ood"].items() if k != "gate"}}

    parity_images = calib.images[:16] or None
    try:
        if args.format == "torchscript":
            out = export_torchscript(model, metadata, args.out, parity_images=parity_images)
            log(f"wrote {out} (TorchScript, for LibTorch / PyTorch Mobile)")
            return {**report, "torchscript": {"path": str(out)}}
        out, written = export_onnx_checked(model, metadata, args.out, opset=args.opset, simplify=not args.no_simplify,
                                           reference_spec=spec, parity_images=parity_images)
    except ExportParityError as e:
        raise ExportError(f"parity check FAILED: {e}", exit_code=1) from e
    parity = written["parity"]
    report["fp32"] = {"path": str(out), "parity": parity}
    log(f"wrote {out} + {out.with_suffix('.json').name} (opset {args.opset}, fp32); parity: max |dp| = "
        f"{parity['max_abs_diff']:.2e} <= {parity['tolerance']:g} on {parity['images']} images")

    if args.int8 or args.int8_weights:
        report.update(_quantized_variants(out, calib, class_names, spec, args, log, warn))
    if not args.no_skin_check:
        report["skin_check"] = _attach_skin_check([out, *(Path(v["path"]) for k, v in report.items()
                                                          if k in ("int8", "int8_weights"))], log, warn)
    report_path = out.with_name(out.stem + ".export-report.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"report: {report_path}")
    return report
