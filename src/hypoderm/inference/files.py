"""Predicting photo files (what `hypoderm predict` runs, torch-free): expand folders, decode ahead, one result
per file whatever goes wrong with it, the Grad-CAM overlays (`--cam DIR`), and the text line for people.

Each photo gets top-k classes with calibrated probabilities and a verdict: `ok`, `uncertain`
(see a dermatologist: top probability below the model's threshold; no class is the answer) or `not_skin` (the OOD
check of hypoderm.inference.ood). A file that cannot be read, or whose processing fails in any way, gets
`status: "error"` with the reason, and the other files are still processed. Folders are expanded
(recursively, sorted). The predictor is an OnnxPredictor (an exported model; ONNX Runtime, numpy and Pillow only)
or, for a `.pt` checkpoint, hypoderm.export.checkpoint_predictor.TorchPredictor (the command loads it lazily).
`--cam DIR` overlays (the photo scaled to at most 512 px) come from the model's own Grad-CAM outputs, in the
same run as the answer (hypoderm.inference.explain). The command (options, exit codes, the --json document of
docs/PREDICT_SCHEMA.md): hypoderm.commands.predict.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from hypoderm.cards import answer_text, display_name, format_probability
from hypoderm.inference.predictor import load_image

OUTPUT_FORMAT = "hypoderm-predict/1"


class Predictor(Protocol):
    """What predict_files needs of a model: OnnxPredictor, or TorchPredictor for a `.pt` checkpoint."""

    metadata: dict[str, Any]
    spec: Any

    @property
    def has_gradcam(self) -> bool: ...

    def predict_image(self, img: Image.Image, top_k: int = 3) -> dict[str, Any]: ...

    def predict_with_cam(self, img: Image.Image, top_k: int = 3) -> tuple[dict[str, Any], tuple[Any, Any]]: ...


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """(files to predict, files skipped, folders that could not be listed with the reason): files as given;
    folders replaced by the entries inside them (hypoderm.imaging.files.walk_folder: iterative, sorted, no hidden
    ones): every entry but a sub-folder (which is searched), so that a broken or
    looping symbolic link, a link to a folder (not followed) or a FIFO gets its own error with the reason
    (hypoderm.imaging.files.read_image_file never opens it) instead of being skipped without a word. A regular file
    in a folder that is not an image by name nor by its first bytes (a README.md, manifest.csv, notes.pdf
    beside the photos) is skipped and counted, not an error (hypoderm.imaging.formats.is_image_like)."""
    from hypoderm.imaging.files import walk_folder
    from hypoderm.imaging.formats import is_image_like

    out: list[Path] = []
    skipped: list[Path] = []
    unlisted: list[tuple[Path, str]] = []
    for p in paths:
        if p.is_dir():
            entries, folders = walk_folder(p)
            for f in entries:
                (out if is_image_like(f) else skipped).append(f)
            unlisted += folders
        else:
            out.append(p)
    return out, skipped, unlisted


def folder_error(folder: Path, reason: str) -> dict[str, Any]:
    """The result of a folder that could not be listed: an error like an unreadable file's (exit code 1)."""
    return {"file": str(folder), "status": "error", "error": reason, "reason": "unreadable"}


def skipped_note(skipped: list[Path]) -> str | None:
    if not skipped:
        return None
    names = ", ".join(f.name for f in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return f"skipped {len(skipped)} file(s) in the folders that are not images: {names}"


def cam_note(predictor: Predictor) -> str | None:
    """None when Grad-CAM can be drawn, else why not (for the user)."""
    if getattr(predictor, "has_gradcam", False):
        return None
    return ("Grad-CAM skipped: this model was exported without the Grad-CAM outputs (features, cam_weights); "
            "re-export it with `hypoderm export` to get heat maps")


def _unique_png(folder: Path, stem: str, used: set[str]) -> Path:
    name, n = f"{stem}.cam.png", 2
    while name in used:
        name, n = f"{stem}_{n}.cam.png", n + 1
    used.add(name)
    return folder / name


def _error(f: Path, e: BaseException) -> dict[str, Any]:
    """The per-file error entry for whatever went wrong with one file."""
    if isinstance(e, FileNotFoundError):
        return {"file": str(f), "status": "error", "error": "file not found", "reason": "not_found"}
    if isinstance(e, MemoryError):
        return {"file": str(f), "status": "error", "error": "not enough memory to process this image",
                "reason": "too_large"}
    reason = getattr(e, "reason", None)
    if isinstance(reason, str):  # ImageLoadError, ImageShapeError: a specific, expected reason
        return {"file": str(f), "status": "error", "error": str(e), "reason": reason}
    if isinstance(e, OSError):
        return {"file": str(f), "status": "error", "error": f"cannot read file ({e.strerror or e})",
                "reason": "unreadable"}
    # Anything else is a bug of ours; the other files still get their answers.
    return {"file": str(f), "status": "error", "error": f"internal error ({type(e).__name__}: {e})",
            "reason": "internal_error"}


def _min_size(predictor: Predictor) -> int | None:
    """The shorter side the model's preprocessing needs, so a JPEG can be decoded at reduced scale."""
    from hypoderm.inference import decode_min_size_for

    spec = getattr(predictor, "spec", None)
    return decode_min_size_for(spec) if spec is not None else None


def _load(f: Path, min_size: int | None) -> Image.Image:
    if not os.path.lexists(f):  # a broken symbolic link exists, and gets its own reason from load_image
        raise FileNotFoundError(str(f))
    return load_image(f, min_size=min_size)


def _decoded(files: list[Path], min_size: int | None, ahead: int) -> Iterator[tuple[Path, Future[Image.Image]]]:
    """(file, future image) in order, decoding up to `ahead` files in background threads while the
    caller runs the model on the current one (Pillow releases the GIL while it decodes). At most
    `ahead` + 1 decoded images are held at once, so memory stays bounded however long the list."""
    with ThreadPoolExecutor(max_workers=max(1, ahead)) as pool:
        window: deque[tuple[Path, Future[Image.Image]]] = deque()
        for f in files:
            window.append((f, pool.submit(_load, f, min_size)))
            if len(window) > ahead:
                yield window.popleft()
        while window:
            yield window.popleft()


def predict_files(predictor: Predictor, files: list[Path], top_k: int = 3, cam_dir: Path | None = None,
                  decode_ahead: int = 1) -> list[dict[str, Any]]:
    """One result per file, in order; a file that fails in any way (unreadable, absurd shape, out of
    memory, a bug) gives {"file", "status": "error", "error", "reason"} and the run goes on.
    `decode_ahead`: files decoded in background threads while the model runs (0: none). 1 keeps at
    most two decoded images in memory (a 64 MP image is ~0.2 GB decoded; with 2, three of them at
    once took the 10,000-file fuzz to 1.04 GB) and still overlaps decoding with the model."""
    from hypoderm.inference.explain import overlay_on_photo

    results: list[dict[str, Any]] = []
    used: set[str] = set()
    # the heat map comes from the same preprocessing and model run as the answer (as the server's)
    want_cam = cam_dir is not None and getattr(predictor, "has_gradcam", False)
    for f, pending in _decoded(files, _min_size(predictor), decode_ahead):
        try:
            img = pending.result()
            if want_cam:
                answer, cam = predictor.predict_with_cam(img, top_k=top_k)
            else:
                answer, cam = predictor.predict_image(img, top_k=top_k), None
            res = {"file": str(f), **answer, "cam": None}
        except Exception as e:  # noqa: BLE001 - (MemoryError included) one bad file must not cost the others
            results.append(_error(f, e))
            continue
        finally:
            del pending
        # a heat map only next to an answer: an uncertain result names no class, so a map of its hidden top
        # class would say more than the answer does (as the app: static/js/render.js renderGradcam)
        if cam_dir is not None and cam is not None and res["status"] == "ok":
            try:
                # the map of the top class, over the photo (at most explain.OVERLAY_MAX_SIDE px)
                index = list(predictor.metadata["class_names"]).index(res["top_k"][0]["label"])
                out = _unique_png(cam_dir, f.stem, used)
                out.parent.mkdir(parents=True, exist_ok=True)
                overlay_on_photo(img, cam[0], cam[1], index, predictor.spec).save(out, format="PNG")
                res["cam"] = str(out)
            except Exception as e:  # noqa: BLE001 - the prediction stands without its overlay
                print(f"{f}: Grad-CAM failed ({type(e).__name__}: {e})", file=sys.stderr)
        results.append(res)
    return results


def text_line(r: dict[str, Any], class_names: list[str]) -> str:
    """One file's answer for people: display names, honest percentages, no class for a rejected
    photo, candidates as equals when uncertain. What the model cannot tell is said once per run, after
    every line (`limits_label`, hypoderm.cards.limits_text), not under each photo."""
    if r["status"] == "error":
        return f"{r['file']}: ERROR: {r['error']}"
    if r["status"] == "not_skin":
        return f"{r['file']}: not_skin: {r['message']}"
    if r["status"] == "uncertain":
        line = f"{r['file']}: uncertain: {r['message']}"
    else:
        others = ", ".join(f"{display_name(t['label'])} {format_probability(t['probability'])}" for t in r["top_k"][1:])
        p = r["top_k"][0]["probability"]
        # in the words of the page (the card's own for other_lesion, never a named diagnosis, and normal_skin, the
        # look-alikes it was given for; "Most likely: ..., of the classes this model knows." for a condition)
        line = f"{r['file']}: ok: {answer_text(r['answer'], p)}" + (f" (others: {others})" if others else "")
    if r.get("cam"):
        line += f"\n    Grad-CAM: {r['cam']}"
    return line


def limits_label(results: list[dict[str, Any]]) -> str | None:
    """The class the run's limits paragraph speaks of: the answer when every answered photo got the same one
    (so a single photo's limits read "cannot tell Vitiligo from ..."), else None (the general wording)."""
    answers = {r["answer"] for r in results if r["status"] == "ok"}
    return answers.pop() if len(answers) == 1 else None
