"""Lesion-free skin cut from lesion photos with exact lesion masks (issue 26, item 4).

When every clinic close-up in the training data shows a lesion, "clinic close-up" itself becomes the sign of the
lesion class, and healthy skin photographed the same way is called a lesion. A lesion photo with an exact mask
also shows skin without the lesion: squares cut away from the (widened) mask, labelled as normal skin, teach
that a clinic close-up without a lesion is normal skin. The mask decides where the lesion is (no heuristic);
two checks keep the squares honest: the mask is widened (pen circles are often drawn around a lesion, outside its
mask) and a square holding pen ink (saturated blue to violet, a colour skin never has) or too little skin colour
is not used.

`cut_lesion_free` writes the squares as PNG files and a manifest that lists the original photos (absolute paths:
they stay where they are; train with --allow-outside-paths) and the squares, each square with its photo's `group`
and `origin`, so that group-aware and held-out-by-origin splits keep a square on the same side as its photo.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hypoderm.data.dataset import DatasetError
from hypoderm.imaging.colour import skin_mask
from hypoderm.imaging.io import ImageLoadError, load_rgb

MASK_COLUMN = "lesion_mask"
OUT_FOLDER = "lesion_free"
WORK_SIDE = 512  # the search runs on the photo shrunk to this longer side; squares are cut at full resolution


@dataclass(frozen=True)
class CutOptions:
    """How squares are cut (shares of the photo's shorter side)."""

    per_photo: int = 2  # squares per photo, at most
    # a square's side (at 0.35 there was no room beside the lesion in 527 of the 672 PAD-UFES-20 photos; 0.25: 145)
    side: float = 0.25
    margin: float = 0.08  # the mask widened by this much on every side (pen circles around the lesion)
    min_skin: float = 0.6  # share of skin-coloured pixels a square needs (no background, no clothing)
    max_ink: float = 0.002  # share of pen-ink pixels a square may hold
    tries: int = 80  # random placements tried per photo

    def __post_init__(self) -> None:
        if self.per_photo < 1:
            raise DatasetError(f"per_photo must be >= 1, got {self.per_photo}")
        if not 0.05 <= self.side <= 1.0:
            raise DatasetError(f"side must be in [0.05, 1], got {self.side}")
        if not 0.0 <= self.margin < 0.5:
            raise DatasetError(f"margin must be in [0, 0.5), got {self.margin}")


@dataclass
class CutReport:
    photos: int = 0
    squares: int = 0
    without_square: list[str] = field(default_factory=list)  # photos where no square fits beside the lesion
    errors: list[tuple[str, str]] = field(default_factory=list)  # (photo, why) for unreadable photos or masks
    manifest: Path | None = None


def _box_sums(mask: np.ndarray) -> np.ndarray:
    """The integral image of a bool mask (one row and column of zeros in front): any box's count in 4 lookups."""
    return np.pad(mask.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)


def widen(mask: np.ndarray, radius: int) -> np.ndarray:
    """Box dilation of a bool mask by `radius` pixels (integral image: every pixel within a (2r+1)^2 box of a
    mask pixel)."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    ii = _box_sums(mask)
    y0 = np.clip(np.arange(h) - radius, 0, h)
    y1 = np.clip(np.arange(h) + radius + 1, 0, h)
    x0 = np.clip(np.arange(w) - radius, 0, w)
    x1 = np.clip(np.arange(w) + radius + 1, 0, w)
    total = ii[y1][:, x1] - ii[y0][:, x1] - ii[y1][:, x0] + ii[y0][:, x0]
    return total > 0


def ink_mask(rgb: np.ndarray) -> np.ndarray:
    """Pen ink: saturated blue to violet pixels (hue 190-320 degrees, saturation > 0.35, not black), which skin
    never is."""
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.float32)
    hue = hsv[..., 0] * (360.0 / 255.0)
    return (hue >= 190) & (hue <= 320) & (hsv[..., 1] > 0.35 * 255) & (hsv[..., 2] > 0.15 * 255)


def _box_total(ii: np.ndarray, y: int, x: int, s: int) -> int:
    return int(ii[y + s, x + s] - ii[y, x + s] - ii[y + s, x] + ii[y, x])


def lesion_free_boxes(rgb: np.ndarray, lesion: np.ndarray, opts: CutOptions,
                      rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(x, y, side) squares of `rgb` (H, W, 3 uint8) that do not touch the widened `lesion` mask (H, W bool), hold
    at most opts.max_ink pen ink and at least opts.min_skin skin colour; at most opts.per_photo, not overlapping
    each other by more than half."""
    if rgb.shape[:2] != lesion.shape:
        raise ValueError(f"photo {rgb.shape[:2]} and mask {lesion.shape} differ in size")
    h, w = lesion.shape
    short = min(h, w)
    side = max(8, int(round(opts.side * short)))
    blocked = _box_sums(widen(lesion, int(round(opts.margin * short))))
    ink = _box_sums(ink_mask(rgb))
    skin = _box_sums(skin_mask(rgb))
    area = side * side
    boxes: list[tuple[int, int, int]] = []
    for _ in range(opts.tries):
        if len(boxes) >= opts.per_photo or side > short:
            break
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        if _box_total(blocked, y, x, side) or _box_total(ink, y, x, side) > opts.max_ink * area:
            continue
        if _box_total(skin, y, x, side) < opts.min_skin * area:
            continue
        if any(abs(x - bx) < side / 2 and abs(y - by) < side / 2 for bx, by, _ in boxes):
            continue
        boxes.append((x, y, side))
    return boxes


def _safe_stem(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem)[:80] or "photo"


def cut_lesion_free(manifest: str | os.PathLike, out_dir: str | os.PathLike, normal_label: str,
                    opts: CutOptions | None = None, seed: int = 0) -> CutReport:
    """Cut lesion-free squares from every row of `manifest` with a lesion mask and write `out_dir/manifest.csv`
    (every original row, with absolute paths, then one row per square labelled `normal_label`)."""
    opts = opts or CutOptions()
    manifest, out_dir = Path(manifest), Path(out_dir)
    try:
        with open(manifest, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"cannot read the manifest {manifest}: {e}") from e
    missing = [c for c in ("path", "label", MASK_COLUMN) if c not in fields]
    if missing:
        raise DatasetError(f"{manifest} has no column {', '.join(missing)} (needed: path, label, {MASK_COLUMN})")
    labels = {r["label"] for r in rows}
    if normal_label not in labels:
        raise DatasetError(f"--normal-label {normal_label!r} is not a class of {manifest} "
                           f"(classes: {', '.join(sorted(labels))})")
    target = out_dir / "manifest.csv"
    if target.exists() or (out_dir / OUT_FOLDER).exists():
        raise DatasetError(f"{out_dir} already holds a lesion-free set; choose an empty folder")
    (out_dir / OUT_FOLDER).mkdir(parents=True, exist_ok=True)
    root = manifest.resolve().parent
    rng = np.random.default_rng(seed)
    report = CutReport()
    added: list[dict[str, str]] = []
    for row in rows:
        if not row.get(MASK_COLUMN):
            continue
        report.photos += 1
        try:
            img = load_rgb(root / row["path"])
            with Image.open(root / row[MASK_COLUMN]) as m:
                mask_img = m.convert("L")
        except (ImageLoadError, OSError) as e:
            report.errors.append((row["path"], str(e)))
            continue
        scale = min(1.0, WORK_SIDE / max(img.size))
        work = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                          Image.Resampling.BILINEAR) if scale < 1 else img
        lesion = np.asarray(mask_img.resize(work.size, Image.Resampling.NEAREST)) > 127
        boxes = lesion_free_boxes(np.asarray(work), lesion, opts, rng)
        if not boxes:
            report.without_square.append(row["path"])
        for k, (x, y, s) in enumerate(boxes):
            box = (round(x / scale), round(y / scale), round((x + s) / scale), round((y + s) / scale))
            name = f"{OUT_FOLDER}/{_safe_stem(row['path'])}_{k}.png"
            img.crop(box).save(out_dir / name)
            fine = f"lesion-free skin beside {row['label']}"
            if row.get("fine_label"):
                fine += f" ({row['fine_label']})"
            added.append({**row, "path": name, "label": normal_label, MASK_COLUMN: "",
                          **({"fine_label": fine} if "fine_label" in fields else {})})
            report.squares += 1
    originals = [{**r, "path": str(root / r["path"]),
                  MASK_COLUMN: str(root / r[MASK_COLUMN]) if r.get(MASK_COLUMN) else ""} for r in rows]
    tmp = target.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(originals + added)
    os.replace(tmp, target)
    report.manifest = target
    return report
