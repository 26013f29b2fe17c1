"""Outlier exposure (Hendrycks, Mazeika & Dietterich, ICLR 2019): pictures that are not skin, shown during
training with a uniform target, so that the model is unsure, not confidently "normal skin", on a picture the
not-skin gate lets through.

The bank: synthetic pictures of `hypoderm.data.nonskin` (its FIT ranges, 8 families) and random crops of the
real sample photos that ship inside installed Python packages (`nonskin.sample_photos`), each resized like a
training photo (shorter side = the preprocessing's resize size). The synthetic pictures are drawn at 224-320 px
(then resized), so the whole bank took 12.8 s on one idle CPU thread, several times that on a busy machine: more
than a short run spends training (issue 28: a 4-epoch 48 px run on 42 photos shows 32 of the 723 pictures;
benchmarks/robustness/README.md). `OutlierBank` therefore draws each picture on its first use and keeps it; a
long run draws them all, once (one process keeps one bank per setting: `hypoderm cv`'s folds share it; each
DataLoader worker keeps the pictures it drew). With a training cache folder the whole bank is drawn once and
stored there as one .npy file.

`real_bank` adds real photographs that are not skin (`--outliers`, e.g. ../shared/data/nonskin: bread, clothing,
animals, rooms, receipts; a third skin-coloured), each as its centre square and two close-ups, decoded once per
cache folder. `--outliers-exclude` leaves origins out, so that the model can be judged on non-skin sources it
never saw (benchmarks/nonskin/real_oe/).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from hypoderm.engine.data import CachedImageDataset
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, resized_uint8

FIRST_SEED = 500_000  # seeds of the bank's synthetic pictures: apart from the gate's FIT (100000+) and TEST (0+)
CROPS_PER_PHOTO = 8


class OutlierBank(Sequence[torch.Tensor]):
    """The bank as CHW uint8 tensors (S x S, S = spec.resize_size), each drawn on first use and kept.

    Item i is a function of (i, spec, per_family, seed) alone, whatever order the items are drawn in:
    the synthetic pictures come first (`nonskin.suite` order), then each sample photo and its close-ups.
    """

    def __init__(self, spec: PreprocessSpec, per_family: int = 60, seed: int = 0) -> None:
        from hypoderm.data import nonskin

        self.side = spec.resize_size
        self._synthetic = [(family, FIRST_SEED + i) for family in nonskin.FAMILIES for i in range(per_family)]
        # each sample photo, then its close-ups: crops drawn now, in one random sequence, cut on use
        rng = np.random.default_rng(seed)
        self._photos: list[tuple[Image.Image, tuple[int, int, int, int] | None]] = []
        for _, img in nonskin.sample_photos():
            self._photos.append((img, None))
            self._photos += [(img, nonskin.closeup_box(img.size, rng)) for _ in range(CROPS_PER_PHOTO)]
        self._made: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._synthetic) + len(self._photos)

    @property
    def drawn(self) -> int:
        """How many pictures were drawn so far (for tests and logs)."""
        return len(self._made)

    def __getitem__(self, i):  # noqa: ANN001, ANN204 - Sequence's int and slice overloads
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"outlier bank index {i} out of range ({len(self)} pictures)")
        i %= len(self)
        hit = self._made.get(i)
        if hit is None:
            hit = torch.from_numpy(np.ascontiguousarray(self.array(i).transpose(2, 0, 1)))
            self._made[i] = hit
        return hit

    def array(self, i: int) -> np.ndarray:
        """Picture i drawn afresh, as (S, S, 3) uint8."""
        from hypoderm.data import nonskin

        if i < len(self._synthetic):
            family, seed = self._synthetic[i]
            return _square(nonskin.picture(family, seed, nonskin.FIT), self.side)
        img, box = self._photos[i - len(self._synthetic)]
        return _square(img if box is None else img.crop(box), self.side)


@functools.lru_cache(maxsize=2)
def _shared_bank(spec: PreprocessSpec, per_family: int, seed: int) -> OutlierBank:
    return OutlierBank(spec, per_family, seed)


def build_bank(spec: PreprocessSpec, per_family: int = 60, seed: int = 0) -> np.ndarray:
    """(N, S, S, 3) uint8: the whole bank at S = spec.resize_size (synthetic + sample-photo crops)."""
    bank = _shared_bank(spec, per_family, seed)
    return np.stack([t.numpy().transpose(1, 2, 0) for t in bank])


def _square(img: Image.Image, side: int) -> np.ndarray:
    """The picture resized like a training photo (shorter side `side`), centre-cropped to a square."""
    spec = PreprocessSpec(size=side, resize_size=side)
    return np.ascontiguousarray(center_crop_array(resized_uint8(img, spec), side))


def load_bank(spec: PreprocessSpec, cache_dir: str | os.PathLike | None, per_family: int = 60,
              seed: int = 0) -> Sequence[torch.Tensor]:
    """The bank as CHW uint8 tensors: from `cache_dir` when it was built there before (built whole and stored
    there otherwise); without `cache_dir`, this process's `OutlierBank`, which draws pictures on first use."""
    if not cache_dir:
        return _shared_bank(spec, per_family, seed)
    from hypoderm.data import nonskin

    photos = len(nonskin.sample_photos())
    key = hashlib.sha1(f"{spec.resize_size}|{per_family}|{seed}|{photos}|v1".encode()).hexdigest()
    return _as_tensors(_cached(Path(cache_dir) / f"outliers-{key}.npy", lambda: build_bank(spec, per_family, seed)))


def _cached(path: Path | None, build: Callable[[], np.ndarray]) -> np.ndarray:
    """`build()`'s array, stored at `path` (written atomically) and read back from there when it was built before;
    a damaged file is built again. `path` None: no cache."""
    if path is not None and path.is_file():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt
    arr = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, path)
    return arr


def _as_tensors(squares: np.ndarray) -> list[torch.Tensor]:
    """(N, S, S, 3) uint8 -> N CHW uint8 tensors."""
    return [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in squares]


REAL_CLOSEUPS = 2  # close-ups per real photo, beside its centre square


def real_bank(source: str | os.PathLike, spec: PreprocessSpec, *, exclude: Sequence[str] = (),
              cache_dir: str | os.PathLike | None = None, closeups: int = REAL_CLOSEUPS, seed: int = 0,
              log: Callable[[str], object] = print) -> list[torch.Tensor]:
    """Real photographs that are not skin, as CHW uint8 squares of side spec.resize_size: each photo of `source` (a
    manifest CSV or an image folder, `hypoderm.data.dataset.load_index`; labels are not used) whose `origin` is not
    in `exclude`, as its centre square and `closeups` close-ups (20-60% of its shorter side, `nonskin.closeup_box`,
    drawn from one generator seeded `seed`). A file that cannot be decoded is skipped and counted in the log line.
    With `cache_dir` the squares are stored there as one .npy, keyed by the files (path, size, mtime) and settings."""
    from hypoderm.data import nonskin
    from hypoderm.data.dataset import DatasetError, load_index
    from hypoderm.errors import HypodermError
    from hypoderm.imaging.io import load_rgb

    index = load_index(source)
    excluded = {o.strip() for o in exclude if o.strip()}
    origins = {s.extra.get("origin", "") for s in index.samples}
    unknown = sorted(excluded - origins)
    if unknown:
        known = ", ".join(sorted(o for o in origins if o)) or "none"
        raise DatasetError(f"{source}: --outliers-exclude names origin(s) the manifest does not have: "
                           f"{', '.join(unknown)} (its origins: {known})")
    samples = [s for s in index.samples if s.extra.get("origin", "") not in excluded]
    if not samples:
        raise DatasetError(f"{source}: no outlier photos left after excluding {', '.join(sorted(excluded))}")
    side = spec.resize_size
    path = None
    if cache_dir:
        stats = [(s.path, s.path.stat()) for s in samples]
        files = "|".join(f"{p}:{st.st_size}:{st.st_mtime_ns}" for p, st in stats)
        key = hashlib.sha1(f"{files}|{side}|{closeups}|{seed}|real-v1".encode()).hexdigest()
        path = Path(cache_dir) / f"outliers-real-{key}.npy"

    def decode() -> np.ndarray:
        rng = np.random.default_rng(seed)
        squares: list[np.ndarray] = []
        skipped: list[str] = []
        for s in samples:
            try:  # close-ups are cut from a decode that keeps ~4x the training resolution
                img = load_rgb(s.path, min_size=4 * side)
            except HypodermError as e:  # ImageLoadError, ImageShapeError: the file's own fault
                skipped.append(f"{s.path.name} ({e})")
                continue
            squares.append(_square(img, side))
            squares += [_square(img.crop(nonskin.closeup_box(img.size, rng)), side) for _ in range(closeups)]
        if not squares:
            raise DatasetError(f"{source}: none of its {len(samples)} outlier photos could be decoded")
        log(f"outliers: {len(samples) - len(skipped)} real photos from {source} ({len(squares)} squares)"
            + (f", {len(excluded)} origin(s) left out: {', '.join(sorted(excluded))}" if excluded else "")
            + (f"; {len(skipped)} unreadable, skipped: {', '.join(skipped[:3])}" if skipped else ""))
        return np.stack(squares)

    return _as_tensors(_cached(path, decode))


class OutlierDataset(CachedImageDataset):
    """The bank as a training dataset (label 0, unused: the loss is to the uniform distribution) that keeps
    the bank as it is, so a lazy `OutlierBank` draws only the pictures the batches show."""

    def __init__(self, bank: Sequence[torch.Tensor], transform: v2.Transform) -> None:
        super().__init__([], [], transform)
        self.images = bank  # type: ignore[assignment]  # read by index only
        self.labels = [0] * len(bank)


def uniform_target_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits to the uniform distribution: mean over classes of -log softmax."""
    return -F.log_softmax(logits, dim=1).mean(dim=1).mean()
