"""One fold of one dataset: load or make the split, check it matches the data, build the fold's data.

The one home of fold preparation: `hypoderm train` (`prepare_fold`), `hypoderm cv` (the split and
the leakage check once for all folds) and `hypoderm evaluate` (`readable_index`, `matching_split`)
all use it, so a rule about splits (reuse, never re-draw; unreadable images named when a split no
longer matches; leaks refused) is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.config import TrainConfig, TrainError


@dataclass
class FoldData:
    """One fold of one dataset, decoded: what training and evaluation need."""

    index: Any  # hypoderm.data.dataset.DatasetIndex (readable samples only)
    split: Any  # hypoderm.data.splits.Split
    split_path: Path
    class_names: list[str]
    labels: np.ndarray
    train_idx: list[int]
    val_idx: list[int]
    test_idx: list[int]
    images: dict[int, torch.Tensor]
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def subset(self, idx: list[int]) -> tuple[list[torch.Tensor], list[int]]:
        return [self.images[i] for i in idx], [int(self.labels[i]) for i in idx]

    def untrained_classes(self) -> list[str]:
        """Classes with no training photo in this fold: in a held-out split, those whose only source is
        the held-out value (the fold cannot learn them, nor test them)."""
        present = set(self.labels[self.train_idx].tolist())
        return [c for i, c in enumerate(self.class_names) if i not in present]

    def column_values(self, idx: list[int], column: str) -> list[str]:
        """Each photo's value in a manifest column (data.splits.column_value)."""
        from hypoderm.data.splits import column_value

        return [column_value(self.index.samples[i], column) for i in idx]


def readable_index(source: str, group_regex: str | None, strict: bool, cache: DecodedCache,
                   progress: bool = False, allow_outside_paths: bool = False) -> tuple[Any, list[tuple[str, str]]]:
    """Index of `source` without unreadable images, decoding each image once into `cache`.

    `check_images` with the cache as its loader: the same rule and reasons, but the decode is kept.
    Returns the readable index and (relative path, reason) for each unreadable image.
    """
    from hypoderm.data.dataset import check_images, load_index

    index = load_index(source, group_regex=group_regex, allow_outside_paths=allow_outside_paths)
    good, bad = check_images(index, strict=strict, loader=cache.get, progress=progress)
    return good, [(index.relpath(s), reason) for s, reason in bad]


def matching_split(split: Any, index: Any, unreadable: Sequence[tuple[str, str]] = ()) -> Any:
    """`split` after checking it lists exactly the files of `index`; the error names the unreadable
    images that were left out, the usual reason a split stops matching its folder."""
    from hypoderm.data.dataset import DatasetError

    try:
        split.check_matches(index)
    except DatasetError as e:
        if not unreadable:
            raise
        raise DatasetError(f"{e}. Note: {len(unreadable)} unreadable image(s) were left out of the dataset: "
                           + ", ".join(p for p, _ in unreadable[:5])) from e
    return split


def load_or_make_split(index: Any, path: Path, *, make_if_missing: bool, folds: int, seed: int,
                       group_regex: str | None, unreadable: Sequence[tuple[str, str]] = (),
                       save: bool = True, hold_out_by: str | None = None) -> Any:
    """The split at `path`, checked against `index`; when it is missing and `make_if_missing`, a new
    one drawn from `index` (held out by the column `hold_out_by` when given; saved there when `save`).
    An existing split is reused, never re-drawn, so a resumed run or a later fold sees the same folds;
    one of the other kind is refused."""
    from hypoderm.data.splits import Split, make_holdout_split, make_split

    if path.is_file() or not make_if_missing:
        split = matching_split(Split.load(path), index, unreadable)
        if split.holdout != hold_out_by:
            have = f"held out by {split.holdout!r}" if split.holdout else "a stratified k-fold split"
            want = f"held out by {hold_out_by!r}" if hold_out_by else "a stratified k-fold split"
            raise TrainError(f"{path} is {have}, but this run asks for {want}")
        # a split this run would have drawn itself (no --split given) but found in its folder, e.g. left by a run
        # that failed after writing it: reused only when it is the one these settings draw
        drawn_otherwise = split.seed != seed or (hold_out_by is None and split.folds != folds)
        if make_if_missing and drawn_otherwise:
            raise TrainError(f"{path}, left in this folder by an earlier run, is {split.folds} folds drawn with seed "
                             f"{split.seed}, but this run asks for {folds} folds with seed {seed}; choose another "
                             f"--out, or delete {path.name} to draw the split again")
        return split
    if hold_out_by is not None:
        split = make_holdout_split(index, hold_out_by, val_folds=folds, seed=seed, group_regex=group_regex)
    else:
        split = make_split(index, folds=folds, seed=seed, group_regex=group_regex)
    if save:
        split.save(path)
    return split


def check_leakage(index: Any, split: Any, allow: bool) -> list[str]:
    """Refuse a split whose train/test share groups or near-duplicates, unless `allow`."""
    from hypoderm.data.audit import find_leaks

    leaks = list(find_leaks(index, split))
    if leaks and not allow:
        shown = "\n".join(f"  {leak}" for leak in leaks[:10])
        more = f"\n  ... and {len(leaks) - 10} more" if len(leaks) > 10 else ""
        raise TrainError(f"the split leaks between folds ({len(leaks)} problem(s)):\n{shown}{more}\n"
                         "Fix the split (`hypoderm data split`) or pass --allow-leakage to train anyway.")
    return [str(x) for x in leaks]


def prepare_fold(cfg: TrainConfig, run_dir: Path | None, cache: DecodedCache, *, write_split: bool = True,
                 progress: bool = False, check_leaks: bool = True) -> FoldData:
    """Index the data, load or make the split (written into the run dir), check leakage, decode."""
    index, bad = readable_index(cfg.data, cfg.group_regex, cfg.strict, cache, progress,
                                allow_outside_paths=cfg.allow_outside_paths)
    if cfg.split:
        split_path = Path(cfg.split)  # given: must exist
    elif run_dir is not None:
        split_path = run_dir / "split.json"  # a resumed run / cv fold reuses it
    else:
        raise TrainError("a run directory is needed to store the new split")
    split = load_or_make_split(index, split_path, make_if_missing=not cfg.split, folds=cfg.folds, seed=cfg.seed,
                               group_regex=cfg.group_regex, unreadable=bad, save=write_split,
                               hold_out_by=cfg.hold_out_by)
    if not 0 <= cfg.fold < split.folds:
        raise TrainError(f"fold {cfg.fold} does not exist; the split has folds 0..{split.folds - 1}")
    if check_leaks:
        check_leakage(index, split, cfg.allow_leakage)
    train_idx, val_idx, test_idx = split.partition(cfg.fold)
    if cfg.final:  # the shipped model: the test fold trains too; validation still steers stopping and calibration
        train_idx, test_idx = sorted(train_idx + test_idx), []
    if not train_idx or not val_idx:
        raise TrainError(f"fold {cfg.fold} leaves {len(train_idx)} training and {len(val_idx)} validation images")
    images = {i: cache.get(s.path) for i, s in enumerate(index.samples)}
    return FoldData(index=index, split=split, split_path=split_path, class_names=list(index.class_names),
                    labels=index.labels(), train_idx=train_idx, val_idx=val_idx, test_idx=test_idx,
                    images=images, unreadable=bad)
