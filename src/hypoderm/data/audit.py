"""Dataset audit (`hypoderm data audit`): counts per class, image sizes, unreadable files, exact
and near duplicates within a class, across classes (label conflicts) and across the folds of a
split file (leakage). Writes `audit.md` (for people) and `audit.csv` (one row per finding).

With `shortcut=True` (the CLI's default) it also runs the shortcut audit (`hypoderm.data.shortcut`):
how well trivial photo features (size, colours, file size) predict the label on the split's folds,
per-feature importance and the classes per skin-tone band, with a loud warning when photo style
alone does well; the per-image features go to `shortcut.csv`.

`train` and `cv` call `find_leaks` to refuse a split that puts the same photo in two folds.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hypoderm.data.dataset import DatasetError, DatasetIndex, Sample
from hypoderm.data.hashing import Fingerprint, fingerprint, near_pairs
from hypoderm.data.shortcut import ShortcutError, ShortcutReport, shortcut_baseline
from hypoderm.data.splits import NEAR_DUPLICATE_THRESHOLD, Split, make_split

KINDS = ("unreadable", "exact_duplicate", "near_duplicate", "label_conflict", "leak")
CSV_COLUMNS = ("kind", "path_a", "label_a", "fold_a", "path_b", "label_b", "fold_b", "distance", "detail")


@dataclass(frozen=True)
class Finding:
    """One problem. `kind` is one of KINDS; pairs fill both sides, `unreadable` only side a.
    `distance` is the phash Hamming distance (0 for byte-identical files)."""

    kind: str
    path_a: str
    label_a: str
    path_b: str = ""
    label_b: str = ""
    fold_a: int | None = None
    fold_b: int | None = None
    distance: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        def side(path: str, label: str, fold: int | None) -> str:
            return f"{path} [{label}" + ("" if fold is None else f", fold {fold}") + "]"

        if not self.path_b:
            return f"{self.kind}: {side(self.path_a, self.label_a, self.fold_a)}: {self.detail}"
        return (f"{self.kind}: {side(self.path_a, self.label_a, self.fold_a)} ~ "
                f"{side(self.path_b, self.label_b, self.fold_b)}: {self.detail}")

    def row(self) -> dict[str, str]:
        return {"kind": self.kind, "path_a": self.path_a, "label_a": self.label_a,
                "fold_a": "" if self.fold_a is None else str(self.fold_a), "path_b": self.path_b,
                "label_b": self.label_b, "fold_b": "" if self.fold_b is None else str(self.fold_b),
                "distance": "" if self.distance is None else str(self.distance), "detail": self.detail}


@dataclass
class AuditReport:
    root: str
    class_counts: dict[str, int]
    # {"width"|"height"|"longer_side": (min, median, max)} over readable images
    sizes: dict[str, tuple[float, float, float]]
    # {class: (min, median, max) of the longer side}: a size gap between classes is a shortcut risk
    longer_side_by_class: dict[str, tuple[float, float, float]]
    near_threshold: int
    findings: list[Finding] = field(default_factory=list)
    split_checked: bool = False  # a split was given, so `leaks` is meaningful
    split_path: str | None = None
    split_mismatch: str | None = None
    shortcut: ShortcutReport | None = None
    shortcut_error: str | None = None  # why the shortcut audit could not run
    shortcut_split: str | None = None  # which folds it used
    cnn_macro_f1: float | None = None  # a CNN's score to compare the shortcut baseline with

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def unreadable(self) -> list[Finding]:
        return self.of_kind("unreadable")

    @property
    def leaks(self) -> list[Finding]:
        return self.of_kind("leak")

    def summary(self) -> str:
        total = sum(self.class_counts.values())
        lines = [f"{total} images in {len(self.class_counts)} classes ({self.root})"]
        lines += [f"  {name}: {n}" for name, n in self.class_counts.items()]
        if self.sizes:
            lo, med, hi = self.sizes["longer_side"]
            lines.append(f"longer side px: min {lo:.0f}, median {med:.0f}, max {hi:.0f}")
        for kind in KINDS:
            if kind == "leak" and not self.split_checked:
                continue
            lines.append(f"{kind.replace('_', ' ')}: {len(self.of_kind(kind))}")
        if self.split_mismatch:
            lines.append(f"split mismatch: {self.split_mismatch}")
        if self.shortcut is not None:
            lines += ["", f"folds: {self.shortcut_split}", self.shortcut.summary(self.cnn_macro_f1)]
        elif self.shortcut_error:
            lines.append(f"shortcut audit skipped: {self.shortcut_error}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        md = ["# Dataset audit", "", f"Source: `{self.root}`  ", f"Near-duplicate threshold: phash Hamming "
              f"distance <= {self.near_threshold} under flips and 90° rotations  "]
        if self.split_path:
            md.append(f"Split file: `{self.split_path}`  ")
        md += ["", "## Images per class", "", "| class | images |", "|---|---:|"]
        md += [f"| {name} | {n} |" for name, n in self.class_counts.items()]
        md += [f"| **total** | **{sum(self.class_counts.values())}** |", "",
               "## Image size (px, after EXIF rotation)", "",
               "| | min | median | max |", "|---|---:|---:|---:|"]
        for key, (lo, med, hi) in self.sizes.items():
            md.append(f"| {key.replace('_', ' ')} | {lo:.0f} | {med:.0f} | {hi:.0f} |")
        for name, (lo, med, hi) in self.longer_side_by_class.items():
            md.append(f"| longer side, {name} | {lo:.0f} | {med:.0f} | {hi:.0f} |")
        md += ["", "## Findings", "", "| kind | count |", "|---|---:|"]
        md += [f"| {k} | {len(self.of_kind(k))} |" for k in KINDS if k != "leak" or self.split_checked]
        if self.split_mismatch:
            md += ["", f"**Split mismatch:** {self.split_mismatch}"]
        titles = {"unreadable": "Unreadable files", "exact_duplicate": "Exact duplicates (same class)",
                  "near_duplicate": "Near-duplicates (same class)",
                  "label_conflict": "Label conflicts (same or near-identical image in two classes)",
                  "leak": "Leakage across folds (same or near-identical image in two folds)"}
        for kind in KINDS:
            items = self.of_kind(kind)
            if not items:
                continue
            md += ["", f"### {titles[kind]}", ""]
            if kind == "unreadable":
                md += ["| file | class | reason |", "|---|---|---|"]
                md += [f"| {f.path_a} | {f.label_a} | {f.detail} |" for f in items]
            else:
                md += ["| file A | fold | file B | fold | distance | detail |", "|---|---:|---|---:|---:|---|"]
                md += [f"| {f.path_a} | {'' if f.fold_a is None else f.fold_a} | {f.path_b} | "
                       f"{'' if f.fold_b is None else f.fold_b} | {f.distance} | {f.detail} |" for f in items]
        if self.shortcut is not None:
            md += ["", self.shortcut.to_markdown(self.cnn_macro_f1).rstrip("\n"), "",
                   f"Folds: {self.shortcut_split}. Per-image features and out-of-fold probabilities: `shortcut.csv`."]
        elif self.shortcut_error:
            md += ["", "## Shortcut audit", "", f"Skipped: {self.shortcut_error}"]
        return "\n".join(md) + "\n"

    def write(self, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write `audit.md` and `audit.csv` (and `shortcut.csv` when the shortcut audit ran) into
        `out_dir`; returns the paths of the first two."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md_path, csv_path = out / "audit.md", out / "audit.csv"
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(fd.row() for fd in self.findings)
        if self.shortcut is not None:
            rows = self.shortcut.csv_rows()
            with open(out / "shortcut.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        return md_path, csv_path


def _duplicate_pairs(fps: list[Fingerprint], near_threshold: int) -> list[tuple[int, int, int]]:
    """(i, j, distance) for every exact (distance 0, same bytes) or near-duplicate pair, i < j."""
    pairs: dict[tuple[int, int], int] = {}
    by_sha: dict[str, list[int]] = {}
    for i, fp in enumerate(fps):
        if fp.sha256:
            by_sha.setdefault(fp.sha256, []).append(i)
    for members in by_sha.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                pairs[(members[a], members[b])] = 0
    for i, j, d in near_pairs(fps, near_threshold):
        pairs.setdefault((i, j), d)
    return [(i, j, d) for (i, j), d in sorted(pairs.items())]


def _pair_detail(fa: Fingerprint, fb: Fingerprint, distance: int) -> str:
    if fa.sha256 == fb.sha256:
        return "byte-identical files"
    return f"near-identical images (phash distance {distance})"


def _split_folds(index: DatasetIndex, split: Split | None) -> list[int | None]:
    if split is None:
        return [None] * len(index.samples)
    fold_by_path = {s.path: s.fold for s in split.samples}
    return [fold_by_path.get(index.relpath(s)) for s in index.samples]


def _leaks(index: DatasetIndex, fps: list[Fingerprint], folds: list[int | None],
           pairs: list[tuple[int, int, int]]) -> list[Finding]:
    out = []
    for i, j, d in pairs:
        if folds[i] is None or folds[j] is None or folds[i] == folds[j]:
            continue
        a, b = index.samples[i], index.samples[j]
        out.append(Finding("leak", index.relpath(a), a.label, index.relpath(b), b.label, folds[i], folds[j],
                           d, _pair_detail(fps[i], fps[j], d)))
    return out


def find_leaks(index: DatasetIndex, split: Split, near_threshold: int = NEAR_DUPLICATE_THRESHOLD) -> list[Finding]:
    """Pairs of files that are byte-identical or near-identical (phash) but sit in different folds.
    Files of the index that the split does not list are ignored."""
    fps = [fingerprint(s.path) for s in index.samples]
    return _leaks(index, fps, _split_folds(index, split), _duplicate_pairs(fps, near_threshold))


def _stats(values: list[int]) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.min()), float(np.median(arr)), float(arr.max())


def audit(index: DatasetIndex, split: Split | None = None, near_threshold: int = NEAR_DUPLICATE_THRESHOLD, *,
          shortcut: bool = False, folds: int = 5, seed: int = 0) -> AuditReport:
    """Audit every file of `index` (decoding each once); with `split`, also look for leakage.

    `shortcut=True` adds the shortcut audit on `split`'s folds, or without a split on a fresh
    `make_split(readable images, folds, seed)`, as `hypoderm data split` would make it."""
    if near_threshold < 0 or near_threshold > 64:
        raise DatasetError(f"near_threshold must be in 0..64 (bits of a 64-bit phash), got {near_threshold}")
    fps = [fingerprint(s.path) for s in index.samples]
    fold_of = _split_folds(index, split)
    findings: list[Finding] = []
    for s, fp, fold in zip(index.samples, fps, fold_of, strict=True):
        if not fp.ok:
            findings.append(Finding("unreadable", index.relpath(s), s.label, fold_a=fold, detail=str(fp.error)))
    pairs = _duplicate_pairs(fps, near_threshold)
    for i, j, d in pairs:
        a, b = index.samples[i], index.samples[j]
        same_bytes = fps[i].sha256 == fps[j].sha256
        kind = ("exact_duplicate" if same_bytes else "near_duplicate") if a.label == b.label else "label_conflict"
        findings.append(Finding(kind, index.relpath(a), a.label, index.relpath(b), b.label, fold_of[i], fold_of[j],
                                d, _pair_detail(fps[i], fps[j], d)))
    split_mismatch = None
    if split is not None:
        findings += _leaks(index, fps, fold_of, pairs)
        try:
            split.check_matches(index)
        except DatasetError as e:
            split_mismatch = str(e)

    ok: list[tuple[Sample, Fingerprint]] = [(s, fp) for s, fp in zip(index.samples, fps, strict=True) if fp.ok]
    sizes: dict[str, tuple[float, float, float]] = {}
    by_class: dict[str, tuple[float, float, float]] = {}
    if ok:
        sizes = {"width": _stats([fp.width for _, fp in ok]), "height": _stats([fp.height for _, fp in ok]),
                 "longer_side": _stats([max(fp.width, fp.height) for _, fp in ok])}
        for name in index.class_names:
            sides = [max(fp.width, fp.height) for s, fp in ok if s.label == name]
            if sides:
                by_class[name] = _stats(sides)
    report = AuditReport(root=str(index.root), class_counts=index.counts(), sizes=sizes,
                         longer_side_by_class=by_class, near_threshold=near_threshold, findings=findings,
                         split_checked=split is not None, split_mismatch=split_mismatch)
    if shortcut:
        _add_shortcut(report, index, split, [s for s, _ in ok], folds, seed)
    return report


def _add_shortcut(report: AuditReport, index: DatasetIndex, split: Split | None, readable: list[Sample],
                  folds: int, seed: int) -> None:
    """Run the shortcut audit into `report`; a dataset too small for it gets a reason, not an error."""
    try:
        if split is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # thin classes: the baseline copes
                split = make_split(replace(index, samples=readable), folds=folds, seed=seed)
            report.shortcut_split = (f"a fresh {split.folds}-fold group-aware split, seed {split.seed} "
                                     f"(groups: {split.group_source}), as `hypoderm data split` makes it")
        else:
            report.shortcut_split = f"the given split's {split.folds} folds"
        report.shortcut = shortcut_baseline(index, split, seed=seed)
    except (ShortcutError, DatasetError, ValueError) as e:
        report.shortcut_error = str(e)
