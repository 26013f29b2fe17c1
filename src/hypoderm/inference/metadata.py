"""The `hypoderm-onnx/1` model metadata, its one home (torch-free): read, build, validate, write.

An exported model carries its metadata twice: embedded in the ONNX file's `metadata_props['hypoderm']`
and as a sidecar JSON beside it (`model.onnx` -> `model.json`; the sidecar wins when both exist, so a
re-calibrated temperature or threshold can be edited without re-exporting). The fields are the contract
of docs/ARCHITECTURE.md; `hypoderm export` builds them from a checkpoint (`metadata_from_checkpoint`),
`predict` and `serve` read them (`load_metadata`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from hypoderm import __version__
from hypoderm.errors import HypodermError
from hypoderm.inference.ood import validate_ood
from hypoderm.inference.preprocess import CROP_RULE, PreprocessSpec
from hypoderm.text import comma_list

METADATA_FORMAT = "hypoderm-onnx/1"
METADATA_KEY = "hypoderm"  # key in the ONNX model's metadata_props
DISCLAIMER = "Decision aid, not a medical device."
DEFAULT_ABSTAIN_THRESHOLD = 0.6
# Weight-only INT8 (hypoderm.export.int8.quantize_weights_int8): the weights are stored as INT8 behind
# DequantizeLinear; with this session config entry ONNX Runtime's constant folding dequantises them once at
# session creation, so the session runs the fp32 graph (and is as fast). The page sets the same entry.
WEIGHT_ONLY_PRECISION = "int8-weights"
DEQUANTIZE_AT_LOAD = {"session.disable_quant_qdq": "1"}


class ModelLoadError(HypodermError, ValueError):
    """The model file or its metadata cannot be used; `str(e)` says why."""


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """`model.onnx` -> `model.json` (same folder, same stem)."""
    return Path(onnx_path).with_suffix(".json")


def session_config(md: dict[str, Any]) -> dict[str, str]:
    """The ONNX Runtime session config entries a model with this metadata needs (none for fp32)."""
    return dict(DEQUANTIZE_AT_LOAD) if md.get("precision") == WEIGHT_ONLY_PRECISION else {}


def load_metadata(onnx_path: str | os.PathLike) -> dict[str, Any]:
    """The hypoderm metadata of an exported model: the sidecar JSON if present, else the copy
    embedded in the ONNX `metadata_props` (the sidecar wins so that a re-calibrated temperature
    or threshold can be edited without re-exporting)."""
    onnx_path = Path(onnx_path)
    if onnx_path.is_file() and onnx_path.stat().st_size == 0:  # (onnx would parse it as a model with nothing in it)
        raise ModelLoadError(f"{onnx_path} is an empty file (0 bytes), not an ONNX model; export one with "
                             "`hypoderm export`")
    side = sidecar_path(onnx_path)
    if side.is_file():
        try:
            md = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"metadata file {side} is not valid JSON ({e})") from e
    else:
        import onnx  # torch-free; only needed when there is no sidecar

        try:
            model = onnx.load(str(onnx_path), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - protobuf errors vary; the meaning is the same
            raise ModelLoadError(f"{onnx_path} is not a readable ONNX model ({type(e).__name__})") from e
        props = {p.key: p.value for p in model.metadata_props}
        if METADATA_KEY not in props:
            raise ModelLoadError(f"{onnx_path} has no hypoderm metadata (no {side.name} beside it and no "
                                 f"metadata_props[{METADATA_KEY!r}]); export it with `hypoderm export`")
        try:
            md = json.loads(props[METADATA_KEY])
        except ValueError as e:
            raise ModelLoadError(f"{onnx_path}: its embedded metadata_props[{METADATA_KEY!r}] is not valid JSON ({e})"
                                 ) from e
    validate_metadata(md, source=str(side if side.is_file() else onnx_path))
    return _finite_or_none(md)  # validated fields are finite; a descriptive one (a NaN metric) becomes null


# Sane ranges for the numbers a sidecar may be edited to (a wrong one must refuse to load, not answer wrongly).
TEMPERATURE_RANGE = (0.01, 100.0)  # the fit clamps to [0.05, 20] (hypoderm.model_quality.TEMPERATURE_BOUNDS)
MAX_INPUT_SIZE = 2048  # pixels per side of the model's input; hypoderm's models use 64-512
PRECISIONS = ("fp32", "int8", WEIGHT_ONLY_PRECISION)


def validate_metadata(md: dict[str, Any], source: str = "metadata") -> None:
    """Raise ModelLoadError naming the first missing or wrong field: every field the run time uses is checked
    for its type and a sane range (finite numbers only), so a bad sidecar refuses to load with one clear
    message instead of answering wrongly, crashing, or printing invalid JSON later."""
    if not isinstance(md, dict) or md.get("format") != METADATA_FORMAT:
        got = md.get("format") if isinstance(md, dict) else type(md).__name__
        raise ModelLoadError(f"{source}: expected format {METADATA_FORMAT!r}, got {got!r}")
    for key in ("class_names", "input", "temperature", "abstain_threshold"):
        if key not in md:
            raise ModelLoadError(f"{source}: missing field {key!r}")
    try:
        _check_class_names(md["class_names"])
        _check_number("temperature", md["temperature"], *TEMPERATURE_RANGE)
        _check_number("abstain_threshold", md["abstain_threshold"], 0.0, 1.0)
        _check_input(md["input"])
        _check_names(md)
        _check_answer_thresholds(md.get("answer_thresholds"), md["class_names"])
    except ValueError as e:
        raise ModelLoadError(f"{source}: {e}") from e
    try:
        validate_ood(md.get("ood"))
    except ValueError as e:
        raise ModelLoadError(f"{source}: bad ood block ({e})") from e


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_number(field: str, x: Any, lo: float, hi: float) -> None:
    if not _is_number(x) or not lo <= x <= hi:
        raise ValueError(f"{field} must be a finite number in [{lo:g}, {hi:g}], got {x!r}")


def _check_class_names(names: Any) -> None:
    if not isinstance(names, list) or not all(isinstance(c, str) and c.strip() for c in names):
        raise ValueError(f"class_names must be a list of non-empty strings, got {names!r}")
    if len(names) < 2:
        raise ValueError(f"class_names must name at least two classes, got {names!r}: a model of one class "
                         "answers it with >99% for every photo")
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise ValueError(f"class_names has duplicates {duplicates}: each output needs its own name")


def _check_input(block: Any) -> None:
    if not isinstance(block, dict):
        raise ValueError(f"input must be an object, got {type(block).__name__}")
    for key in ("size", "resize_size"):
        x = block.get(key)
        if not isinstance(x, int) or isinstance(x, bool) or not 16 <= x <= MAX_INPUT_SIZE:
            raise ValueError(f"input.{key} must be a whole number of pixels in [16, {MAX_INPUT_SIZE}], got {x!r}")
    if not block["size"] <= block["resize_size"] <= 2 * block["size"]:
        raise ValueError(f"input.resize_size must be between size and 2 x size ({block['size']}-"
                         f"{2 * block['size']}), got {block['resize_size']!r}")
    for key, lo in (("mean", -1e3), ("std", 1e-6)):
        values = block.get(key)
        if not isinstance(values, list) or len(values) != 3 or not all(_is_number(v) and lo <= v <= 1e3
                                                                         for v in values):
            what = "positive " if key == "std" else ""
            raise ValueError(f"input.{key} must be a list of 3 finite {what}numbers (R, G, B), got {values!r}")
    for key, want in (("layout", "NCHW"), ("dtype", "float32"), ("crop", CROP_RULE)):  # no crop: CROP_RULE
        if key in block and block[key] != want:
            raise ValueError(f"input.{key} must be {want!r}, got {block[key]!r}")
    try:
        PreprocessSpec.from_dict(block)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"bad input spec ({e})") from e


def _check_answer_thresholds(block: Any, class_names: list[str]) -> None:
    """`answer_thresholds` (optional): class name -> the probability that class needs to be answered."""
    if block is None:
        return
    if not isinstance(block, dict):
        raise ValueError(f"answer_thresholds must be an object of class name -> probability, got {block!r}")
    for name, p in block.items():
        if name not in class_names:
            raise ValueError(f"answer_thresholds names {name!r}, which is not one of the classes {class_names}")
        _check_number(f"answer_thresholds[{name!r}]", p, 0.0, 1.0)


def _check_names(md: dict[str, Any]) -> None:
    """The tensor names, the precision and the fields printed to people, where given, have the types the run time
    uses (a string `quality` once crashed `predict`)."""
    for block, keys in (("input", ("name",)), ("output", ("name",)), ("gradcam", ("features", "cam_weights"))):
        value = md.get(block)
        if value is None and block != "input":
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{block} must be an object, got {value!r}")
        for key in keys:
            if key in value and not (isinstance(value[key], str) and value[key]):
                raise ValueError(f"{block}.{key} must be a tensor name (a non-empty string), got {value[key]!r}")
    if "precision" in md and md["precision"] not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {md['precision']!r}")
    for key in ("model_name", "version", "architecture", "disclaimer"):  # printed as text; null is allowed
        if md.get(key) is not None and not isinstance(md[key], str):
            raise ValueError(f"{key} must be a string, got {md[key]!r}")
    for key in ("metrics", "training_data", "quality"):
        if md.get(key) is not None and not isinstance(md[key], dict):
            raise ValueError(f"{key} must be an object, got {md[key]!r}")
    problems = (md.get("quality") or {}).get("problems") or []
    if not isinstance(problems, list) or not all(isinstance(p, dict) and isinstance(p.get("message"), str)
                                                 and isinstance(p.get("code"), str) for p in problems):
        raise ValueError(f"quality.problems must be a list of {{'code', 'message'}} objects, got {problems!r}")


def _finite_or_none(obj: Any) -> Any:
    """`obj` with every NaN or infinity replaced by None: JSON has no such numbers, so what `predict --json` and
    `serve` print from the metadata (metrics, training data) must not carry them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    return obj


def to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays, tuples and Paths -> plain JSON types (checkpoint metrics often hold them); NaN and
    infinities -> None (JSON has no such numbers)."""
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        if hasattr(o, "item"):  # a 0-d torch tensor, without importing torch
            return o.item()
        return str(o)

    return _finite_or_none(json.loads(json.dumps(obj, default=default)))


# A path of the machine that trained or exported a model, inside any text of its metadata: absolute (`/home/...`,
# `~/...`, `C:\\...`) or leading out of a folder (`../...`); a relative path inside the data (`vitiligo/a.jpg`) and
# names such as `hypoderm-onnx/1` are not matched.
_MACHINE_PATH = re.compile(r"(?:(?<![\w./~:-])(?:~|[A-Za-z]:)?[\\/](?=[A-Za-z_.~])|(?<![\w./])\.\.[\\/])"
                           r"[^\s,;'\"()\[\]{}<>]*")


def public_path(path: str, resolve: bool = False) -> str:
    """A path as a model's metadata may show it, without the folders of the machine it came from: its last
    component (a CSV manifest: with its folder's name) and the first 12 hex digits of the SHA-256 of the path
    (`resolve`: of the resolved path), so the same source keeps the same name, e.g. `multisource/index.csv
    [sha256:0123456789ab]`."""
    text = str(Path(path).expanduser().resolve()) if resolve else path
    p = PurePath(text.replace("\\", "/"))
    name = f"{p.parent.name}/{p.name}" if p.suffix.lower() == ".csv" and p.parent.name else p.name or "/"
    return f"{name} [sha256:{hashlib.sha256(text.encode('utf-8', 'replace')).hexdigest()[:12]}]"


def _public_match(m: re.Match[str]) -> str:
    path = m.group(0)
    end = len(path.rstrip(".:"))  # a sentence's full stop is not part of the path
    return public_path(path[:end]) + path[end:]


def redact_paths(obj: Any) -> Any:
    """`obj` (JSON-like) with every machine path in its strings replaced by its `public_path`: what `model.json`
    and `/api/v1/model` may carry (issue 28: the trainer's absolute --data path was served to anyone)."""
    if isinstance(obj, str):
        return _MACHINE_PATH.sub(_public_match, obj)
    if isinstance(obj, dict):
        return {k: redact_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_paths(v) for v in obj]
    return obj


# Blocks that name tensors or define the computation (an ONNX tensor name may start with '/'): never rewritten.
FUNCTIONAL_KEYS = frozenset({"format", "class_names", "input", "output", "gradcam"})


def public_metadata(md: dict[str, Any]) -> dict[str, Any]:
    """The metadata with every machine path in its descriptive blocks replaced (redact_paths): what is written
    into model.json and what `/api/v1/model` serves, also for a sidecar written before this rule."""
    return {k: v if k in FUNCTIONAL_KEYS else redact_paths(v) for k, v in md.items()}


def input_block(spec: PreprocessSpec) -> dict[str, Any]:
    """The `input` block: tensor layout plus the one preprocessing definition (PreprocessSpec)."""
    return {"name": "input", "layout": "NCHW", "dtype": "float32", **spec.to_dict()}


def metadata_from_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A `hypoderm-onnx/1` metadata dict from a checkpoint dict (see hypoderm.checkpoint).

    `ood` is copied as is (None when the checkpoint has no fitted thresholds: the exporter then
    fits them from calibration images or sets the documented permissive default)."""
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    summary = dict(ckpt.get("data_summary") or {})
    if summary.get("source"):  # the trainer's --data: a name and a hash, not the folders of its machine
        summary["source"] = public_path(str(summary["source"]), resolve=True)
    if isinstance(summary.get("unreadable"), list):  # (file, reason) pairs: only how many
        summary["unreadable"] = len(summary["unreadable"])
    threshold = ckpt.get("abstain_threshold")
    counts = summary.get("counts") or {}
    text = summary.get("summary") or (
        ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "not recorded in the checkpoint")
    md = {
        "format": METADATA_FORMAT,
        "model_name": ckpt["model_name"],
        "architecture": ckpt.get("architecture", ckpt["model_name"]),
        "version": __version__,
        "precision": "fp32",
        "class_names": list(ckpt["class_names"]),
        "input": input_block(spec),
        "output": {"name": "logits"},
        "temperature": float(ckpt.get("temperature") or 1.0),
        "abstain_threshold": float(threshold if threshold is not None else DEFAULT_ABSTAIN_THRESHOLD),
        "ood": ckpt.get("ood"),
        "training_data": {"summary": text, "counts": counts,
                          **{k: v for k, v in summary.items() if k not in ("summary", "counts")}},
        "metrics": ckpt.get("metrics") or {},
        "epoch": ckpt.get("epoch"),
        "disclaimer": DISCLAIMER,
    }
    cfg = ckpt.get("config") or {}
    if cfg.get("outlier_exposure"):  # what the model saw that is not skin (engine.outliers): synthetic + sample photos,
        md["training_data"]["outliers"] = {  # and the real photos of --outliers, named like the data source
            "weight": float(cfg["outlier_exposure"]),
            "real_photos": public_path(str(cfg["outliers"]), resolve=True) if cfg.get("outliers") else None,
            "excluded_origins": comma_list(cfg.get("outliers_exclude"))}
    if int(ckpt.get("num_classes", len(md["class_names"]))) != len(md["class_names"]):
        raise ValueError(f"checkpoint has num_classes={ckpt['num_classes']} but {len(md['class_names'])} class names")
    return to_jsonable(md)


def write_metadata(onnx_path: str | os.PathLike, metadata: dict[str, Any],
                   source: str | os.PathLike | None = None) -> Path:
    """Embed `metadata` in the ONNX graph's metadata_props['hypoderm'] and write it to `onnx_path` with the
    sidecar JSON; the graph comes from `source` (default: `onnx_path` itself), so that a model staged
    elsewhere (checked, compared) is written to its final place once. Returns the sidecar path."""
    import onnx

    onnx_path = Path(onnx_path)
    metadata = public_metadata(to_jsonable(metadata))
    validate_metadata(metadata, source=str(onnx_path))
    model = onnx.load(str(source if source is not None else onnx_path))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata, separators=(",", ":"), allow_nan=False))
    model.producer_name = "hypoderm"
    model.producer_version = __version__
    onnx.save(model, str(onnx_path))
    side = sidecar_path(onnx_path)
    side.write_text(json.dumps(metadata, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return side
