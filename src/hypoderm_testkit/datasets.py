"""Synthetic image datasets that tiny models can learn, for tests and benchmark scripts: an ImageFolder, a CSV
manifest with patient groups, a manifest with photo origins, and a folder of broken files."""

from __future__ import annotations

import colorsys
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image


def class_colour(k: int, n: int) -> tuple[int, int, int]:
    """Well separated skin-ish base colour for class k of n (hue spread, fixed saturation/value)."""
    r, g, b = colorsys.hsv_to_rgb((0.02 + k / max(n, 1)) % 1.0, 0.55, 0.75)
    return int(r * 255), int(g * 255), int(b * 255)


def synthetic_image(k: int, n_classes: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class k: base colour, a random smooth pattern (so no two images are
    near-duplicates) and a pale patch, like a depigmented lesion."""
    base = np.array(class_colour(k, n_classes), dtype=np.float32)
    coarse = rng.uniform(-45, 45, size=(8, 8)).astype(np.float32)
    pattern = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))
    arr = base[None, None, :] + pattern[:, :, None] + rng.normal(0, 4, size=(size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0.25, 0.75, size=2) * size
    radius = rng.uniform(0.12, 0.25) * size
    patch = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
    arr[patch] = arr[patch] * 0.4 + 255 * 0.6
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_image_folder(root: Path, classes: tuple[str, ...] = ("a", "b", "c"), per_class: int = 8,
                      size: int = 48, seed: int = 0, fmt: str = "png") -> Path:
    """Write an ImageFolder dataset under `root` (one sub-folder per class); returns `root`."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            synthetic_image(k, len(classes), size, rng).save(folder / f"{name}_{i:03d}.{fmt}")
    return root


def make_csv_manifest(root: Path, classes: tuple[str, ...] = ("a", "b"), patients_per_class: int = 6,
                      images_per_patient: int = 2, size: int = 48, seed: int = 0) -> Path:
    """Images under `root/images` and `root/manifest.csv` with columns
    path,label,group,skin_type,site (group = patient id). Returns the CSV path."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, name in enumerate(classes):
        for p in range(patients_per_class):
            patient = f"P{k}{p:02d}"
            for i in range(images_per_patient):
                rel = f"images/{patient}_{i}.png"
                synthetic_image(k, len(classes), size, rng).save(root / rel)
                rows.append({"path": rel, "label": name, "group": patient,
                             "skin_type": f"FST{1 + (p % 6)}", "site": "arm" if i % 2 else "face"})
    csv_path = root / "manifest.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "group", "skin_type", "site"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


# (origin, label, patients): healthy skin from three origins, "vitiligo" from one (a single-source class,
# as in the real multisource set), "other" from one
ORIGINS = (("web", "normal", 4), ("web", "vitiligo", 6), ("clinic", "normal", 4), ("hands", "normal", 3),
           ("clinic", "other", 5))


def make_origin_manifest(root: Path, images_per_patient: int = 2, size: int = 48, seed: int = 0) -> Path:
    """Synthetic photos in root/images and root/index.csv with columns path,label,group,origin."""
    rng = np.random.default_rng(seed)
    classes = sorted({label for _, label, _ in ORIGINS})
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for origin, label, patients in ORIGINS:
        for p in range(patients):
            group = f"{origin}-{label}-{p}"
            for i in range(images_per_patient):
                rel = f"images/{group}-{i}.png"
                synthetic_image(classes.index(label), len(classes), size, rng).save(root / rel)
                rows.append({"path": rel, "label": label, "group": group, "origin": origin})
    path = root / "index.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "group", "origin"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_bad_files(folder: Path, seed: int = 0) -> dict[str, str]:
    """Write one file of each broken kind into `folder`, all with image extensions.
    Returns {file name: expected ImageLoadError.reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    buf = io.BytesIO()
    img.save(buf, "PNG")
    png = bytearray(buf.getvalue())
    png[len(png) // 2: len(png) // 2 + 32] = b"\xaa" * 32  # damage the compressed data (CRC fails)
    files = {
        "empty.jpg": (b"", "empty"),
        "document.jpg": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "not_image"),
        "webpage.png": (b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>\n", "not_image"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "corrupt.png": (bytes(png), "corrupt"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}
