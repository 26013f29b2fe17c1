"""Stratified, group-aware k-fold splits, held-out-value splits, and the split file (`hypoderm data split`).

Groups keep photos that must not be separated (same patient, same lesion, near-identical
re-uploads) in one fold: from the CSV `group` column, else a file-name regex, else clusters of
near-duplicate images (perceptual hash, Hamming distance <= 4 under flips and 90° rotations).

A held-out split (`make_holdout_split`, `hypoderm data split --hold-out-by origin`) has one fold per
value of a manifest column (e.g. `origin`): fold f tests on every photo with the f-th value and
trains and validates on all the others, so the test photos come from a source the model never saw.
Its validation photos are one group-aware, stratified draw (`val` on each sample) of about
1/`val_folds` of every (class, value) cell; fold f validates on those of them outside value f.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.data.dataset import DatasetError, DatasetIndex, Sample, apply_group_regex
from hypoderm.data.hashing import fingerprint, near_pairs
from hypoderm.text import listing

SPLIT_FORMAT = "hypoderm-split/1"
NEAR_DUPLICATE_THRESHOLD = 4


@dataclass(frozen=True)
class SplitSample:
    path: str  # relative to the index root, POSIX form
    label: str
    group: str
    fold: int
    val: bool = False  # held-out splits only: a validation photo of every fold that does not test it


MISSING_VALUE = "(none)"  # the held-out value of a photo whose manifest cell is empty


def column_value(sample: Sample, column: str) -> str:
    """A sample's value in a manifest column: `label`, `group`, `skin_type` or any extra CSV column
    (`origin`, `body_site`, ...); MISSING_VALUE when the cell is empty. DatasetError for a column the
    manifest does not have."""
    if column in ("label", "group", "skin_type"):
        value = getattr(sample, column)
    elif column in sample.extra:
        value = sample.extra[column]
    else:
        known = ["label", "group", "skin_type", *sorted(sample.extra)]
        raise DatasetError(f"the manifest has no column {column!r}; its columns: {', '.join(known)}")
    return str(value) if value not in (None, "") else MISSING_VALUE


@dataclass
class Split:
    """k folds over a dataset; `samples` are in the index's order (label, relative path)."""

    folds: int
    seed: int
    group_source: str
    class_names: list[str]
    samples: list[SplitSample]
    # held-out splits: the manifest column, and its value tested by each fold (fold f tests values[f])
    holdout: str | None = None
    values: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": SPLIT_FORMAT, "folds": self.folds, "seed": self.seed,
                             "group_source": self.group_source, "class_names": list(self.class_names)}
        if self.holdout is not None:
            d.update(holdout=self.holdout, values=list(self.values or []))
        d["samples"] = [{"path": s.path, "label": s.label, "group": s.group, "fold": s.fold,
                         **({"val": s.val} if self.holdout is not None else {})} for s in self.samples]
        return d

    def fold_name(self, fold: int) -> str:
        """'fold 2', or for a held-out split 'origin=abdomen-web'."""
        if self.holdout is not None and self.values is not None:
            return f"{self.holdout}={self.values[fold]}"
        return f"fold {fold}"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON split file (atomically; same split -> byte-identical file)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Split:
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise DatasetError(f"{p}: split file not found") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(f"{p}: not a readable JSON split file ({e})") from e
        if not isinstance(d, dict) or d.get("format") != SPLIT_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise DatasetError(f"{p}: not a hypoderm split file (format {got!r}, expected {SPLIT_FORMAT!r})")
        try:
            k = int(d["folds"])
            samples = [SplitSample(path=str(s["path"]), label=str(s["label"]), group=str(s["group"]),
                                   fold=int(s["fold"]), val=bool(s.get("val", False))) for s in d["samples"]]
            holdout = d.get("holdout")
            values = [str(v) for v in d["values"]] if holdout is not None else None
            split = cls(folds=k, seed=int(d["seed"]), group_source=str(d["group_source"]),
                        class_names=[str(c) for c in d["class_names"]], samples=samples,
                        holdout=str(holdout) if holdout is not None else None, values=values)
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{p}: malformed split file ({type(e).__name__}: {e})") from e
        if values is not None and len(values) != k:
            raise DatasetError(f"{p}: a held-out split lists {len(values)} values for {k} folds")
        bad_folds = sorted({s.fold for s in samples if not 0 <= s.fold < k})
        if bad_folds:
            raise DatasetError(f"{p}: fold numbers {bad_folds} outside 0..{k - 1}")
        unknown = sorted({s.label for s in samples} - set(split.class_names))
        if unknown:
            raise DatasetError(f"{p}: labels {unknown} not in class_names")
        return split

    def check_matches(self, index: DatasetIndex) -> None:
        """Raise `DatasetError` unless the index holds exactly the split's files, labels and order."""
        mine = {s.path: s.label for s in self.samples}
        theirs = {index.relpath(s): s.label for s in index.samples}
        problems = []
        only_split = sorted(set(mine) - set(theirs))
        only_index = sorted(set(theirs) - set(mine))
        relabelled = sorted(p for p in set(mine) & set(theirs) if mine[p] != theirs[p])
        if only_split:
            problems.append(f"{len(only_split)} file(s) in the split but not in the dataset: {listing(only_split, 10)}")
        if only_index:
            problems.append(f"{len(only_index)} file(s) in the dataset but not in the split: {listing(only_index, 10)}")
        if relabelled:
            problems.append(f"{len(relabelled)} file(s) with another label: {listing(relabelled, 10)}")
        if self.class_names != index.class_names:
            problems.append(f"class names differ: split {self.class_names}, dataset {index.class_names}")
        if not problems and [s.path for s in self.samples] != [index.relpath(s) for s in index.samples]:
            problems.append("same files but in another order (build the index with load_index)")
        if problems:
            raise DatasetError("the split file does not match the dataset: " + "; ".join(problems))

    def fold_of(self) -> np.ndarray:
        return np.array([s.fold for s in self.samples], dtype=np.int64)

    def role(self, fold: int, sample: SplitSample) -> str:
        """"test", "val" or "train": what `sample` does for the model of fold `fold`. k-fold: test =
        fold `fold`, val = fold `(fold + 1) % k`; held-out: test = value `fold`, val = the drawn
        validation photos of the other values."""
        if sample.fold == fold:
            return "test"
        if self.holdout is not None:
            return "val" if sample.val else "train"
        return "val" if sample.fold == (fold + 1) % self.folds else "train"

    def partition(self, fold: int) -> tuple[list[int], list[int], list[int]]:
        """(train, val, test) sample indices of fold `fold` (see `role`)."""
        if not 0 <= fold < self.folds:
            raise DatasetError(f"fold must be in 0..{self.folds - 1}, got {fold}")
        parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        for i, s in enumerate(self.samples):
            parts[self.role(fold, s)].append(i)
        return parts["train"], parts["val"], parts["test"]

    def summary(self) -> str:
        """Per-fold class counts and group counts, as a small text table."""
        names = [self.values[f] if self.values else str(f) for f in range(self.folds)]
        width = max(4, *(len(n) for n in names))
        header = f"{'fold':>{width}} " + " ".join(f"{c[:14]:>14}" for c in self.class_names) + f" {'groups':>7}"
        if self.holdout is not None:
            header += f" {'val':>5}"
        lines = [header]
        for f in range(self.folds):
            in_fold = [s for s in self.samples if s.fold == f]
            counts = Counter(s.label for s in in_fold)
            row = (f"{names[f]:>{width}} " + " ".join(f"{counts.get(c, 0):>14}" for c in self.class_names)
                   + f" {len({s.group for s in in_fold}):>7}")
            if self.holdout is not None:
                row += f" {sum(s.val for s in in_fold):>5}"
            lines.append(row)
        return "\n".join(lines)


def near_duplicate_groups(index: DatasetIndex, threshold: int = NEAR_DUPLICATE_THRESHOLD) -> list[str]:
    """One group name per sample: connected components of the near-duplicate graph (union-find).
    Unreadable images get a group of their own. Group name = first member's relative path."""
    fps = [fingerprint(s.path) for s in index.samples]
    n = len(fps)
    pairs = near_pairs(fps, threshold)
    # Exact byte duplicates are near-duplicates too (phash is equal), but unreadable files have
    # no phash: join identical bytes explicitly.
    by_sha: dict[str, int] = {}
    for i, fp in enumerate(fps):
        if fp.sha256 and fp.sha256 in by_sha:
            pairs.append((by_sha[fp.sha256], i, 0))
        by_sha.setdefault(fp.sha256, i)
    from scipy.sparse import coo_matrix  # here, not above: `data audit/split --help` runs without the training extras
    from scipy.sparse.csgraph import connected_components

    rows = [i for i, _, _ in pairs]
    cols = [j for _, j, _ in pairs]
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    first: dict[int, str] = {}
    for i, c in enumerate(component.tolist()):
        first.setdefault(c, index.relpath(index.samples[i]))
    return [first[c] for c in component.tolist()]


def _check_split_args(index: DatasetIndex, folds: int, near_threshold: int) -> None:
    if folds < 3:
        raise DatasetError(f"folds must be at least 3 (train, val and test folds), got {folds}")
    if len(index.class_names) < 2:
        raise DatasetError(f"a split needs at least 2 classes, found {index.class_names}")
    if len(index.samples) == 0:
        raise DatasetError("the dataset is empty")
    if not 0 <= near_threshold <= 64:
        raise DatasetError(f"near_threshold must be in 0..64 (bits of a 64-bit phash), got {near_threshold}")


def split_groups(index: DatasetIndex, group_regex: str | None = None,
                 near_threshold: int = NEAR_DUPLICATE_THRESHOLD) -> tuple[str, list[str]]:
    """(where the groups come from, one group name per sample): the CSV's groups, else the regex's,
    else near-duplicate clusters (for the samples that have no group)."""
    if all(s.group is not None for s in index.samples):
        source = index.group_source or "csv"
        groups = [str(s.group) for s in index.samples]
    elif group_regex is not None:
        index_g = apply_group_regex(index, group_regex)
        source = "regex" if index.group_source is None else f"{index.group_source}+regex"
        groups = [str(s.group) for s in index_g.samples]
    else:
        near = near_duplicate_groups(index, near_threshold)
        partial = index.group_source is not None
        source = f"{index.group_source}+near-duplicates" if partial else "near-duplicates"
        groups = [str(s.group) if s.group is not None else "near:" + g
                  for s, g in zip(index.samples, near, strict=True)]
    return source, groups


def _stratified_group_folds(y: np.ndarray, groups: list[str], folds: int, seed: int) -> np.ndarray:
    """Fold of each sample from StratifiedGroupKFold (groups as integer ids in first-appearance
    order, so the result depends only on the data and the seed)."""
    from sklearn.model_selection import StratifiedGroupKFold

    gid = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    g_arr = np.array([gid[g] for g in groups])
    fold_of = np.full(len(groups), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the "fewer members than n_splits" one; warned by callers
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        for f, (_, test_idx) in enumerate(cv.split(np.zeros(len(y)), y, g_arr)):
            fold_of[test_idx] = f
    return fold_of


def make_split(index: DatasetIndex, folds: int = 5, seed: int = 0, group_regex: str | None = None,
               near_threshold: int = NEAR_DUPLICATE_THRESHOLD, stratify_by: str | None = None) -> Split:
    """Stratified group k-fold (scikit-learn's StratifiedGroupKFold, shuffled with `seed`).
    `near_threshold` (phash Hamming distance) only matters when groups come from near-duplicates;
    a higher one over-groups (cheap) rather than lets a cropped copy cross folds (leak). `stratify_by`
    (a manifest column, e.g. origin) stratifies by (class, value) instead of class, so that every fold,
    the validation fold included, holds every source of every class in proportion."""
    _check_split_args(index, folds, near_threshold)
    source, groups = split_groups(index, group_regex, near_threshold)
    y = index.labels()
    if stratify_by is not None:
        cells = [f"{s.label}\x00{column_value(s, stratify_by)}" for s in index.samples]
        y = np.unique(cells, return_inverse=True)[1]
    n_groups = len(set(groups))
    if n_groups < folds:
        raise DatasetError(f"only {n_groups} groups for {folds} folds; use fewer folds")
    per_class = {c: len({g for g, s in zip(groups, index.samples, strict=True) if s.label == c})
                 for c in index.class_names}
    thin = {c: n for c, n in per_class.items() if n < folds}
    if thin:
        warnings.warn(f"class(es) with fewer groups than folds, some folds will lack them: {thin}", stacklevel=2)

    fold_of = _stratified_group_folds(y, groups, folds, seed)
    samples = [SplitSample(path=index.relpath(s), label=s.label, group=g, fold=int(f))
               for s, g, f in zip(index.samples, groups, fold_of, strict=True)]
    return Split(folds=folds, seed=seed, group_source=source, class_names=list(index.class_names), samples=samples)


def make_holdout_split(index: DatasetIndex, column: str, val_folds: int = 5, seed: int = 0,
                       group_regex: str | None = None, near_threshold: int = NEAR_DUPLICATE_THRESHOLD) -> Split:
    """One fold per value of the manifest column `column` (sorted; an empty cell is MISSING_VALUE):
    fold f tests on the photos with value f and trains on the others. The validation photos are one
    StratifiedGroupKFold draw of 1/`val_folds` stratified by (class, value), so each fold validates on
    every value it trains on. A group (patient) found under two values is refused: it would put one
    patient's photos on both sides of a fold."""
    _check_split_args(index, 3, near_threshold)
    if val_folds < 2:
        raise DatasetError(f"val_folds must be at least 2 (validation = 1/val_folds of the photos), got {val_folds}")
    values = [column_value(s, column) for s in index.samples]
    names = sorted(set(values))
    if len(names) < 2:
        raise DatasetError(f"holding out by {column!r} needs at least 2 values, found {names}")
    source, groups = split_groups(index, group_regex, near_threshold)
    value_of_group: dict[str, str] = {}
    crossing = sorted({g for g, v in zip(groups, values, strict=True) if value_of_group.setdefault(g, v) != v})
    if crossing:
        raise DatasetError(f"{len(crossing)} group(s) have photos under two values of {column!r} (e.g. "
                           f"{listing(crossing, 3)}); a held-out split would put them on both sides of a fold")
    cell = [f"{s.label}\x00{v}" for s, v in zip(index.samples, values, strict=True)]
    strata = np.unique(cell, return_inverse=True)[1]
    inner = _stratified_group_folds(strata, groups, val_folds, seed)
    samples = [SplitSample(path=index.relpath(s), label=s.label, group=g, fold=names.index(v), val=bool(f == 0))
               for s, g, v, f in zip(index.samples, groups, values, inner, strict=True)]
    return Split(folds=len(names), seed=seed, group_source=source, class_names=list(index.class_names),
                 samples=samples, holdout=column, values=names)
