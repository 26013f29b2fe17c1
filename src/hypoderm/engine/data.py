"""Torch datasets over the decoded cache, transforms, samplers and DataLoader building."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, WeightedRandomSampler
from torchvision.transforms import v2

from hypoderm.engine.config import RECIPES
from hypoderm.errors import UsageError
from hypoderm.inference.preprocess import PreprocessSpec, normalize_uint8, square_from_resized


class TrainTransform:
    """crop -> optional label-changing `Counterfactual` -> the rest; called as `t(img, label) -> (x, label)`."""

    takes_label = True

    def __init__(self, crop: v2.Transform | torch.nn.Module, rest: v2.Transform, counterfactual: Any = None) -> None:
        self.crop, self.rest, self.counterfactual = crop, rest, counterfactual

    def __call__(self, img: torch.Tensor, label: int) -> tuple[torch.Tensor, int]:
        x = self.crop(img)
        if self.counterfactual is not None:
            x, label = self.counterfactual(x, label)
        return self.rest(x), label


def train_transform(spec: PreprocessSpec, recipe: str = "standard", counterfactual: Any = None) -> TrainTransform:
    """Augmentation for skin photos, on a CHW uint8 tensor (and its label).

    Geometry is free (a lesion has no canonical orientation), but colour is changed only mildly:
    the diagnostic signal is the loss of pigment, so saturation jitter is tiny and hue jitter is off
    (it would also cost ~6 ms per 128 px image on one CPU thread for its RGB<->HSV round trip, more
    than all the other augmentations together; see benchmarks/cv/README.md). `recipe` (RECIPES) adds
    the anti-shortcut transforms of `hypoderm.engine.augment`; `counterfactual` (an
    `augment.Counterfactual`) may change a crop's label.
    """
    if recipe not in RECIPES:
        raise UsageError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    from hypoderm.engine.augment import Degrade, SkinGuidedCrop, ToneShift

    parts = RECIPES[recipe]
    crop = (SkinGuidedCrop(spec.size) if "crop" in parts
            else v2.RandomResizedCrop(spec.size, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), antialias=True))
    colour: list[torch.nn.Module] = []
    if "degrade" in parts:
        colour.append(Degrade())
    if "tone" in parts:
        colour.append(ToneShift())
    rest = v2.Compose([
        *colour,
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomRotation(15),
        v2.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.05),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(spec.mean), std=list(spec.std)),
    ])
    return TrainTransform(crop, rest, counterfactual)


class SquareEval:
    """The square rule's last steps on a cached CHW uint8 tensor (`hypoderm.inference.preprocess.resized_uint8`):
    its centre square resized straight to `spec.size`, normalised. Equal to `preprocess` (what `predict`, the API
    and the page give the model) bit for bit, so evaluation, calibration and the thresholds fitted on them see
    what the deployed model sees."""

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        hwc = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
        return torch.from_numpy(normalize_uint8(square_from_resized(hwc, self.spec), self.spec))


def eval_transform(spec: PreprocessSpec) -> SquareEval:
    """Evaluation's view of a cached tensor: the square rule (see SquareEval)."""
    return SquareEval(spec)


class CachedImageDataset(Dataset):
    """(image tensor, label) pairs over decoded CHW uint8 tensors."""

    def __init__(self, images: Sequence[torch.Tensor], labels: Sequence[int], transform: v2.Transform) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = list(images)
        self.labels = [int(y) for y in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def _apply(self, i: int) -> tuple[torch.Tensor, int]:
        if getattr(self.transform, "takes_label", False):
            return self.transform(self.images[i], self.labels[i])
        return self.transform(self.images[i]), self.labels[i]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):  # (index, seed) from SeededSampler: augmentation is a function of the seed
            i, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._apply(i)
        return self._apply(key)


class SizedSampler(Protocol):
    """A sampler that knows its epoch length (RandomSampler, DistributedSampler, ...)."""

    def __iter__(self) -> Iterator[int]: ...

    def __len__(self) -> int: ...


class SeededSampler(Sampler):
    """Wraps a sampler to yield (index, seed) pairs, seed = f(seed, epoch, position).

    Each sample's augmentation then depends only on the run seed, the epoch and its position in the
    epoch, not on the number of DataLoader workers or on worker state, so workers can persist across
    epochs and a resumed run replays the next epoch exactly.
    """

    def __init__(self, sampler: SizedSampler, seed: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)  # DistributedSampler's own shuffling

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):  # noqa: ANN204 - Iterator[tuple[int, int]]
        base = (self.seed * 1_000_003 + self.epoch) * 1_000_003
        for pos, i in enumerate(self.sampler):
            yield int(i), (base + pos) % 2**63


def class_counts(labels: Sequence[int], num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 over present classes (sklearn's 'balanced')."""
    counts = class_counts(labels, num_classes).astype(np.float64)
    w = np.zeros(num_classes)
    present = counts > 0
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(w, dtype=torch.float32)


def balanced_sampler(labels: Sequence[int], num_classes: int, generator: torch.Generator) -> WeightedRandomSampler:
    """Draws each class equally often in expectation (same epoch length as the data)."""
    w = class_weights(labels, num_classes)[torch.as_tensor(list(labels))]
    return WeightedRandomSampler(w.tolist(), num_samples=len(labels), replacement=True, generator=generator)


def cell_weights(labels: Sequence[int], cells: Sequence[str], num_classes: int) -> np.ndarray:
    """Per-photo sampling weights (summing to 1) that draw every present class equally often and,
    inside a class, each cell (a source such as an origin) in proportion to the square root of its
    photo count: 566 abdomen photos and 13 hand photos of healthy skin are drawn 21:4, not 566:13
    (one source would stand for the class) nor 1:1 (13 photos repeated until they are memorised)."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(cells):
        raise ValueError(f"{len(y)} labels but {len(cells)} cell values")
    w = np.zeros(len(y))
    present = [c for c in range(num_classes) if (y == c).any()]
    for c in present:
        in_class = np.nonzero(y == c)[0]
        _, inverse, counts = np.unique(np.array([cells[int(i)] for i in in_class]), return_inverse=True,
                                       return_counts=True)
        share = np.sqrt(counts) / np.sqrt(counts).sum()  # each cell's share of the class's draws
        w[in_class] = share[inverse] / counts[inverse] / len(present)
    return w


def cell_balanced_sampler(labels: Sequence[int], cells: Sequence[str], num_classes: int,
                          generator: torch.Generator) -> WeightedRandomSampler:
    """`cell_weights` as a sampler (same epoch length as the data)."""
    w = cell_weights(labels, cells, num_classes)
    return WeightedRandomSampler(w.tolist(), num_samples=len(w), replacement=True, generator=generator)


def build_train_loader(dataset: CachedImageDataset, *, batch_size: int, workers: int, balance: str,
                       num_classes: int, generator: torch.Generator, distributed: bool = False,
                       seed: int = 0, pin_memory: bool = False, cells: Sequence[str] | None = None) -> DataLoader:
    """Shuffled (or class-balanced) training loader.

    Call `loader.sampler.set_epoch(e)` and reseed `generator` at each epoch: the order then comes
    from `generator` and each sample's augmentation from (seed, epoch, position), for exact resume.
    `cells` (one source value per photo) makes the balanced sampler balance sources inside classes too.
    """
    sampler: Sampler
    if distributed:
        # each rank sees a disjoint shard; balancing is then done by the loss (see train.py)
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=False)
    elif balance == "sampler" and cells is not None:
        sampler = cell_balanced_sampler(dataset.labels, cells, num_classes, generator)
    elif balance == "sampler":
        sampler = balanced_sampler(dataset.labels, num_classes, generator)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    # drop_last avoids a 1-image batch, which BatchNorm cannot train on
    drop_last = len(dataset) > batch_size
    # ranks shuffle with one seed (disjoint shards) but augment with their own
    aug_seed = seed + 7919 * torch.distributed.get_rank() if distributed else seed
    return DataLoader(dataset, batch_size=batch_size, sampler=SeededSampler(sampler, aug_seed), num_workers=workers,
                      drop_last=drop_last, pin_memory=pin_memory, persistent_workers=workers > 0,
                      # the loader draws worker base seeds from its own generator, once per iterator;
                      # a private one keeps those draws out of the sampler's order and the global RNG
                      generator=torch.Generator().manual_seed(seed))


def build_eval_loader(dataset: CachedImageDataset, *, batch_size: int, workers: int,
                      pin_memory: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=workers > 0)
