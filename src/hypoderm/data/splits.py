"""Stratified, group-aware k-fold splits and the split file (`hypoderm data split`).

Groups keep photos that must not be separated (same patient, same lesion, near-identical
re-uploads) in one fold: from the CSV `group` column, else a file-name regex, else clusters of
near-duplicate images (perceptual hash, Hamming distance <= 4 under flips and 90° rotations).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from hypoderm.data.dataset import DatasetError, DatasetIndex, apply_group_regex, check_images, load_index
from hypoderm.data.hashing import fingerprint, near_pairs

SPLIT_FORMAT = "hypoderm-split/1"
NEAR_DUPLICATE_THRESHOLD = 4


@dataclass(frozen=True)
class SplitSample:
    path: str  # relative to the index root, POSIX form
    label: str
    group: str
    fold: int


@dataclass
class Split:
    """k folds over a dataset; `samples` are in the index's order (label, relative path)."""

    folds: int
    seed: int
    group_source: str
    class_names: list[str]
    samples: list[SplitSample]

    def to_dict(self) -> dict[str, Any]:
        return {"format": SPLIT_FORMAT, "folds": self.folds, "seed": self.seed,
                "group_source": self.group_source, "class_names": list(self.class_names),
                "samples": [{"path": s.path, "label": s.label, "group": s.group, "fold": s.fold}
                            for s in self.samples]}

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
                                   fold=int(s["fold"])) for s in d["samples"]]
            split = cls(folds=k, seed=int(d["seed"]), group_source=str(d["group_source"]),
                        class_names=[str(c) for c in d["class_names"]], samples=samples)
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{p}: malformed split file ({type(e).__name__}: {e})") from e
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
            problems.append(f"{len(only_split)} file(s) in the split but not in the dataset: {_few(only_split)}")
        if only_index:
            problems.append(f"{len(only_index)} file(s) in the dataset but not in the split: {_few(only_index)}")
        if relabelled:
            problems.append(f"{len(relabelled)} file(s) with another label: {_few(relabelled)}")
        if self.class_names != index.class_names:
            problems.append(f"class names differ: split {self.class_names}, dataset {index.class_names}")
        if not problems and [s.path for s in self.samples] != [index.relpath(s) for s in index.samples]:
            problems.append("same files but in another order (build the index with load_index)")
        if problems:
            raise DatasetError("the split file does not match the dataset: " + "; ".join(problems))

    def fold_of(self) -> np.ndarray:
        return np.array([s.fold for s in self.samples], dtype=np.int64)

    def partition(self, fold: int) -> tuple[list[int], list[int], list[int]]:
        """(train, val, test) sample indices: test = fold `fold`, val = fold `(fold + 1) % k`,
        train = the others."""
        if not 0 <= fold < self.folds:
            raise ValueError(f"fold must be in 0..{self.folds - 1}, got {fold}")
        val_fold = (fold + 1) % self.folds
        train: list[int] = []
        val: list[int] = []
        test: list[int] = []
        for i, s in enumerate(self.samples):
            (test if s.fold == fold else val if s.fold == val_fold else train).append(i)
        return train, val, test

    def summary(self) -> str:
        """Per-fold class counts and group counts, as a small text table."""
        header = f"{'fold':>4} " + " ".join(f"{c[:14]:>14}" for c in self.class_names) + f" {'groups':>7}"
        lines = [header]
        for f in range(self.folds):
            in_fold = [s for s in self.samples if s.fold == f]
            counts = Counter(s.label for s in in_fold)
            lines.append(f"{f:>4} " + " ".join(f"{counts.get(c, 0):>14}" for c in self.class_names)
                         + f" {len({s.group for s in in_fold}):>7}")
        return "\n".join(lines)


def _few(items: list[str], n: int = 10) -> str:
    return ", ".join(items[:n]) + (f", ... and {len(items) - n} more" if len(items) > n else "")


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
    rows = [i for i, _, _ in pairs]
    cols = [j for _, j, _ in pairs]
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    first: dict[int, str] = {}
    for i, c in enumerate(component.tolist()):
        first.setdefault(c, index.relpath(index.samples[i]))
    return [first[c] for c in component.tolist()]


def make_split(index: DatasetIndex, folds: int = 5, seed: int = 0, group_regex: str | None = None,
               near_threshold: int = NEAR_DUPLICATE_THRESHOLD) -> Split:
    """Stratified group k-fold (scikit-learn's StratifiedGroupKFold, shuffled with `seed`).
    `near_threshold` (phash Hamming distance) only matters when groups come from near-duplicates;
    a higher one over-groups (cheap) rather than lets a cropped copy cross folds (leak)."""
    if folds < 3:
        raise ValueError(f"folds must be at least 3 (train, val and test folds), got {folds}")
    if len(index.class_names) < 2:
        raise DatasetError(f"a split needs at least 2 classes, found {index.class_names}")
    if len(index.samples) == 0:
        raise DatasetError("the dataset is empty")
    if not 0 <= near_threshold <= 64:
        raise ValueError(f"near_threshold must be in 0..64 (bits of a 64-bit phash), got {near_threshold}")

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

    y = index.labels()
    n_groups = len(set(groups))
    if n_groups < folds:
        raise DatasetError(f"only {n_groups} groups for {folds} folds; use fewer folds")
    per_class = {c: len({g for g, s in zip(groups, index.samples, strict=True) if s.label == c})
                 for c in index.class_names}
    thin = {c: n for c, n in per_class.items() if n < folds}
    if thin:
        warnings.warn(f"class(es) with fewer groups than folds, some folds will lack them: {thin}", stacklevel=2)

    # Integer group ids in first-appearance order, so the result depends only on the data and seed.
    gid = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    g_arr = np.array([gid[g] for g in groups])
    fold_of = np.full(len(groups), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the "fewer members than n_splits" one; warned above
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        for f, (_, test_idx) in enumerate(cv.split(np.zeros(len(y)), y, g_arr)):
            fold_of[test_idx] = f
    samples = [SplitSample(path=index.relpath(s), label=s.label, group=g, fold=int(f))
               for s, g, f in zip(index.samples, groups, fold_of, strict=True)]
    return Split(folds=folds, seed=seed, group_source=source, class_names=list(index.class_names), samples=samples)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="ImageFolder directory or CSV manifest (path,label[,group][,skin_type])")
    parser.add_argument("--folds", type=int, default=5, help="number of folds k (>= 3; default 5)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (same seed -> same file; default 0)")
    parser.add_argument("--group-regex", default=None,
                        help="regex on the file name; group = first capture group (e.g. '^(P\\d+)_')")
    parser.add_argument("--near-threshold", type=int, default=NEAR_DUPLICATE_THRESHOLD,
                        help="max phash Hamming distance for near-duplicate groups, when there are no "
                             "CSV/regex groups (default 4)")
    parser.add_argument("--out", default="split.json", help="split file to write (default split.json)")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        index = load_index(args.source, group_regex=None)
        good, bad = check_images(index)
        for s, reason in bad:
            print(f"skipped unreadable {index.relpath(s)}: {reason}", file=sys.stderr)
        split = make_split(good, folds=args.folds, seed=args.seed, group_regex=args.group_regex,
                           near_threshold=args.near_threshold)
        split.save(args.out)
    except (DatasetError, ValueError) as e:
        print(f"hypoderm data split: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"hypoderm data split: error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    n_groups = len({s.group for s in split.samples})
    print(f"{len(split.samples)} images, {len(split.class_names)} classes, {n_groups} groups "
          f"({split.group_source}), {split.folds} folds, seed {split.seed}")
    print(split.summary())
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
