"""Outlier exposure's bank (hypoderm.engine.outliers): drawn on first use, the same pictures as drawn whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hypoderm.data import nonskin
from hypoderm.engine import outliers
from hypoderm.inference.preprocess import PreprocessSpec

SPEC = PreprocessSpec.for_size(32)


def eager_bank(spec: PreprocessSpec, per_family: int, seed: int = 0) -> list[np.ndarray]:
    """The bank as it was built before it became lazy: every picture, in one pass."""
    out = [outliers._square(img, spec.resize_size)
           for _, img in nonskin.suite(per_family, outliers.FIRST_SEED, nonskin.FIT)]
    rng = np.random.default_rng(seed)
    for _, img in nonskin.sample_photos():
        out.append(outliers._square(img, spec.resize_size))
        out += [outliers._square(crop, spec.resize_size)
                for crop in nonskin.closeups(img, rng, outliers.CROPS_PER_PHOTO)]
    return out


def test_lazy_bank_draws_on_use_the_pictures_of_the_whole_bank() -> None:
    bank = outliers.OutlierBank(SPEC, per_family=2, seed=1)
    expected = eager_bank(SPEC, per_family=2, seed=1)
    assert len(bank) == len(expected) == 8 * 2 + len(nonskin.sample_photos()) * (1 + outliers.CROPS_PER_PHOTO)
    assert bank.drawn == 0  # nothing is drawn up front
    order = [len(bank) - 1, 3, 0, 17, 3, len(bank) // 2]  # out of order, one twice
    for i in order:
        t = bank[i]
        assert t.dtype.is_floating_point is False and t.shape == (3, SPEC.resize_size, SPEC.resize_size)
        assert np.array_equal(t.numpy().transpose(1, 2, 0), expected[i]), f"picture {i} differs"
    assert bank.drawn == len(set(order))
    assert bank[-1] is bank[len(bank) - 1]  # kept, not drawn again


def test_cached_bank_equals_the_lazy_one(tmp_path: Path) -> None:
    stored = outliers.load_bank(SPEC, tmp_path, per_family=1)
    assert len(list(tmp_path.glob("outliers-*.npy"))) == 1
    again = outliers.load_bank(SPEC, tmp_path, per_family=1)  # from the .npy file
    lazy = outliers.OutlierBank(SPEC, per_family=1)
    assert len(stored) == len(again) == len(lazy)
    assert all(np.array_equal(a.numpy(), b.numpy()) and np.array_equal(a.numpy(), c.numpy())
               for a, b, c in zip(stored, again, lazy, strict=True))


def test_outlier_dataset_keeps_the_bank_lazy() -> None:
    from hypoderm.engine.data import eval_transform

    bank = outliers.OutlierBank(SPEC, per_family=1)
    ds = outliers.OutlierDataset(bank, eval_transform(SPEC))
    assert len(ds) == len(bank) and bank.drawn == 0
    x, y = ds[5]
    assert x.shape == (3, 32, 32) and y == 0 and bank.drawn == 1
