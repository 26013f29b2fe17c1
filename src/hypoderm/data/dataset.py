"""The dataset index: which image files, with which labels (and optional groups), from an
ImageFolder directory or a CSV manifest. Nothing here decodes images except `check_images`."""

from __future__ import annotations

import csv
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.errors import HypodermError
from hypoderm.imaging.files import walk_folder
from hypoderm.imaging.formats import IMAGE_EXTENSIONS
from hypoderm.imaging.io import ImageLoadError, load_rgb
from hypoderm.text import listing


class DatasetError(HypodermError, ValueError):
    """A dataset source that cannot be indexed (bad layout, bad manifest, missing files, ...)."""


@dataclass
class Sample:
    path: Path
    label: str
    group: str | None = None
    skin_type: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class DatasetIndex:
    """All samples of a dataset. `class_names` is sorted; label ids index into it."""

    root: Path
    samples: list[Sample]
    class_names: list[str]
    # Where `Sample.group` came from: "csv", "regex" or None (no groups yet).
    group_source: str | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> np.ndarray:
        lookup = {name: i for i, name in enumerate(self.class_names)}
        return np.array([lookup[s.label] for s in self.samples], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        """Images per class, every class listed (0 if it has none)."""
        out = {name: 0 for name in self.class_names}
        for s in self.samples:
            out[s.label] += 1
        return out

    def relpath(self, sample: Sample) -> str:
        """The sample's path relative to `root` (POSIX form), as split files store it."""
        return relative_posix(sample.path, self.root)


def relative_posix(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()  # a CSV may point outside its folder: keep the absolute path


def _from_image_folder(root: Path) -> DatasetIndex:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = f" ({len(loose)} images lie directly in it)" if loose else ""
        raise DatasetError(f"{root}: no class sub-folders{hint}; expected one sub-folder per class "
                           "(ImageFolder layout) or a CSV manifest")
    samples: list[Sample] = []
    empty: list[str] = []
    unlisted: list[str] = []
    for class_dir in class_dirs:
        # Recursive like torchvision's ImageFolder (iteratively); hidden files and folders (.DS_Store,
        # .ipynb_checkpoints) skipped; symbolic links to folders not followed.
        entries, folders = walk_folder(class_dir)
        found = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
        unlisted += [f"{relative_posix(f, root)}: {why}" for f, why in folders]
        if not found:
            empty.append(class_dir.name)
        samples += [Sample(path=p, label=class_dir.name) for p in found]
    if unlisted:  # its photos cannot even be counted: training on the rest would be a silent subset
        raise DatasetError(f"{root}: {len(unlisted)} folder(s) cannot be listed: {listing(unlisted)}")
    if empty:
        raise DatasetError(f"{root}: class folder(s) with no images: {listing(empty)} "
                           f"(image extensions: {' '.join(sorted(IMAGE_EXTENSIONS))})")
    return DatasetIndex(root=root, samples=samples, class_names=[d.name for d in class_dirs])


def _from_csv(csv_path: Path, allow_outside_paths: bool = False) -> DatasetIndex:
    root = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{csv_path}: not a UTF-8 text CSV ({e.reason})") from e
    except csv.Error as e:
        raise DatasetError(f"{csv_path}: malformed CSV ({e})") from e
    missing_cols = [c for c in ("path", "label") if c not in columns]
    if missing_cols:
        raise DatasetError(f"{csv_path}: missing column(s) {', '.join(missing_cols)}; the header must be "
                           f"path,label[,group][,skin_type][,...], found: {','.join(columns) or '(empty file)'}")
    if not rows:
        raise DatasetError(f"{csv_path}: the manifest has no rows")

    samples: list[Sample] = []
    blank: list[str] = []
    missing_files: list[str] = []
    seen: dict[Path, int] = {}
    duplicates: list[str] = []
    outside: list[str] = []
    for line_no, raw in enumerate(rows, start=2):  # line 1 is the header
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        path_text, label = row.get("path", ""), row.get("label", "")
        if not path_text or not label:
            blank.append(f"line {line_no}")
            continue
        path = Path(path_text) if Path(path_text).is_absolute() else root / path_text
        if not path.resolve().is_relative_to(root):  # `../x.jpg`, `/etc/hostname`, a symbolic link leading out
            outside.append(f"{path_text} (line {line_no})")
            if not allow_outside_paths:
                continue
        if not path.is_file():
            missing_files.append(path_text)
            continue
        if path in seen:
            duplicates.append(f"{path_text} (lines {seen[path]} and {line_no})")
            continue
        seen[path] = line_no
        extra = {k: v for k, v in row.items() if k not in ("path", "label", "group", "skin_type") and k}
        samples.append(Sample(path=path, label=label, group=row.get("group") or None,
                              skin_type=row.get("skin_type") or None, extra=extra))
    problems = []
    if outside and not allow_outside_paths:
        problems.append(f"{len(outside)} row(s) point outside the manifest's folder {root}: {listing(outside)} (a "
                        "manifest lists photos in or below its own folder; pass --allow-outside-paths to read them)")
    elif outside:
        print(f"{csv_path}: reading {len(outside)} file(s) outside the manifest's folder, as allowed: "
              f"{listing(outside)}", file=sys.stderr)
    if blank:
        problems.append(f"empty path or label on {listing(blank)}")
    if missing_files:
        problems.append(f"{len(missing_files)} listed file(s) not found: {listing(missing_files)}")
    if duplicates:
        problems.append(f"file(s) listed twice: {listing(duplicates)}")
    if problems:
        raise DatasetError(f"{csv_path}: " + "; ".join(problems))
    has_groups = any(s.group for s in samples)
    return DatasetIndex(root=root, samples=samples, class_names=sorted({s.label for s in samples}),
                        group_source="csv" if has_groups else None)


def apply_group_regex(index: DatasetIndex, group_regex: str) -> DatasetIndex:
    """Set the group of every sample that has none from its file name: the first capture group of
    `group_regex` (or the whole match). A file name that does not match is an error, because a
    silent fallback would put one patient's photos in two folds."""
    try:
        pattern = re.compile(group_regex)
    except re.error as e:
        raise DatasetError(f"invalid group regex {group_regex!r}: {e}") from e
    samples, unmatched = [], []
    for s in index.samples:
        if s.group is not None:
            samples.append(s)
            continue
        m = pattern.search(s.path.name)
        if m is None:
            unmatched.append(s.path.name)
            continue
        group = next((g for g in m.groups() if g is not None), None) if m.groups() else m.group(0)
        samples.append(replace(s, group=group or m.group(0)))
    if unmatched:
        raise DatasetError(f"group regex {group_regex!r} does not match {len(unmatched)} file name(s): "
                           f"{listing(unmatched)}")
    source = "regex" if index.group_source is None else index.group_source
    return replace(index, samples=samples, group_source=source)


def load_index(source: str | os.PathLike[str], group_regex: str | None = None,
               allow_outside_paths: bool = False) -> DatasetIndex:
    """Index an ImageFolder directory or a `path,label[,group][,skin_type][,...]` CSV manifest.

    A manifest's rows must lie in or below its folder once resolved (no `../x.jpg`, no absolute path elsewhere,
    no symbolic link leading out): DatasetError listing them, unless `allow_outside_paths` (they are then
    listed on stderr and read).

    Samples are sorted by (label, relative path), so the same source always gives the same order
    (split files rely on it)."""
    src = Path(source).expanduser()
    if not src.exists():
        raise DatasetError(f"{src}: no such file or directory")
    if src.is_dir():
        index = _from_image_folder(src.resolve())
    elif src.suffix.lower() == ".csv":
        index = _from_csv(src.resolve(), allow_outside_paths)
    else:
        raise DatasetError(f"{src}: expected an ImageFolder directory or a .csv manifest")
    index.samples.sort(key=lambda s: (s.label, index.relpath(s)))
    if group_regex is not None:
        index = apply_group_regex(index, group_regex)
    return index


def check_images(index: DatasetIndex, strict: bool = False, loader: Callable[[Path], Any] | None = None,
                 progress: bool = False) -> tuple[DatasetIndex, list[tuple[Sample, str]]]:
    """Decode every image fully. Returns the index of the readable samples (same `class_names`, so
    label ids do not move) and (sample, reason) for each unreadable one; `strict=True` raises
    `DatasetError` listing them all instead. `loader` (default `load_rgb`) lets a caller keep what it
    decodes, e.g. the training cache; it must raise `ImageLoadError` for a bad file."""
    load = loader or load_rgb
    good: list[Sample] = []
    bad: list[tuple[Sample, str]] = []
    samples = index.samples
    if progress:
        from hypoderm.progress import progress_bar

        samples = progress_bar(samples, desc="decoding", unit="img")
    for s in samples:
        try:
            load(s.path)
        except ImageLoadError as e:
            bad.append((s, str(e)))
        else:
            good.append(s)
    if bad and strict:
        lines = "\n".join(f"  {index.relpath(s)}: {reason}" for s, reason in bad)
        raise DatasetError(f"{len(bad)} unreadable image(s) in {index.root}:\n{lines}")
    return replace(index, samples=good), bad
