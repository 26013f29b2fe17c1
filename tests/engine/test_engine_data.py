"""Decoded cache, transforms, samplers: eval from the cache is exactly `preprocess`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.data import (
    CachedImageDataset,
    balanced_sampler,
    build_train_loader,
    class_weights,
    eval_transform,
    train_transform,
)
from hypoderm.engine.fold import readable_index
from hypoderm.imaging.io import load_rgb
from hypoderm.inference.preprocess import PreprocessSpec, preprocess
from hypoderm_testkit.datasets import make_bad_files


def _paths(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


@pytest.mark.parametrize("size", [32, 40])
def test_eval_from_cache_equals_preprocess(image_folder: Path, size: int) -> None:
    spec = PreprocessSpec.for_size(size)
    cache = DecodedCache(spec)
    tf = eval_transform(spec)
    for p in _paths(image_folder)[:4]:
        x = tf(cache.get(p)).numpy()
        ref = preprocess(load_rgb(p), spec)
        assert x.shape == ref.shape == (3, size, size)
        np.testing.assert_allclose(x, ref, atol=1e-5)


def test_non_square_and_odd_sizes_match_preprocess(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    p = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 256, (37, 91, 3), dtype=np.uint8)).save(p)
    spec = PreprocessSpec(size=29, resize_size=33)
    x = eval_transform(spec)(DecodedCache(spec).get(p)).numpy()
    np.testing.assert_allclose(x, preprocess(load_rgb(p), spec), atol=1e-5)


def test_large_photo_evaluates_as_predict_sees_it(tmp_path: Path) -> None:
    """Issue 29: evaluation's view of a photo large enough to be box-reduced (the cache decodes it like `predict`
    and `serve`, reduced on the way) is the model input `predict` gives it, bit for bit: the square rule."""
    from PIL import Image

    from hypoderm.inference.preprocess import reduce_factor

    rng = np.random.default_rng(1)
    p = tmp_path / "large.png"
    Image.fromarray(rng.integers(0, 256, (500, 703, 3), dtype=np.uint8)).save(p)
    spec = PreprocessSpec.for_size(32)
    assert reduce_factor(500, spec) == 6
    x = eval_transform(spec)(DecodedCache(spec).get(p)).numpy()
    np.testing.assert_array_equal(x, preprocess(load_rgb(p), spec))


def test_disk_cache_is_reused_and_survives_a_damaged_entry(image_folder: Path, tmp_path: Path) -> None:
    spec = PreprocessSpec.for_size(32)
    paths = _paths(image_folder)
    first = DecodedCache(spec, tmp_path / "cache")
    a = first.load_all(paths)
    assert first.decoded == len(paths)
    second = DecodedCache(spec, tmp_path / "cache")
    b = second.load_all(paths)
    assert second.decoded == 0  # all from disk
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    entry = next((tmp_path / "cache").glob("*.npy"))
    entry.write_bytes(b"garbage")
    third = DecodedCache(spec, tmp_path / "cache")
    c = third.load_all(paths)
    assert third.decoded == 1 and all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    # another resize is another cache entry, not a wrong hit
    other = DecodedCache(PreprocessSpec.for_size(40), tmp_path / "cache")
    assert other.get(paths[0]).shape[1:] != a[0].shape[1:] and other.decoded == 1


def test_cache_stores_uint8_at_resize_size(image_folder: Path) -> None:
    spec = PreprocessSpec.for_size(32)
    t = DecodedCache(spec).get(_paths(image_folder)[0])
    assert t.dtype == torch.uint8 and t.shape[0] == 3 and min(t.shape[1:]) == spec.resize_size


def test_train_transform_output(image_folder: Path) -> None:
    spec = PreprocessSpec.for_size(32)
    img = DecodedCache(spec).get(_paths(image_folder)[0])
    torch.manual_seed(0)
    a, label = train_transform(spec)(img, 1)
    b, _ = train_transform(spec)(img, 1)
    assert label == 1
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert not torch.equal(a, b)  # random
    torch.manual_seed(0)
    assert torch.equal(train_transform(spec)(img, 1)[0], a)  # but seeded


def test_unreadable_images_are_skipped_with_reasons_or_fail_strict(image_folder: Path) -> None:
    from hypoderm.data.dataset import DatasetError

    expected = make_bad_files(image_folder / "a")
    spec = PreprocessSpec.for_size(32)
    index, bad = readable_index(str(image_folder), None, False, DecodedCache(spec))
    assert len(index.samples) == 24
    assert sorted(Path(p).name for p, _ in bad) == sorted(expected)
    assert all(reason for _, reason in bad)
    with pytest.raises(DatasetError, match="unreadable"):
        readable_index(str(image_folder), None, True, DecodedCache(spec))


def test_class_weights_and_balanced_sampler() -> None:
    labels = [0] * 30 + [1] * 10
    w = class_weights(labels, 3)
    assert w[0].item() == pytest.approx(40 / (2 * 30)) and w[1].item() == pytest.approx(40 / (2 * 10))
    assert w[2].item() == 0.0  # absent class
    g = torch.Generator().manual_seed(0)
    drawn = np.array([labels[i] for _ in range(50) for i in balanced_sampler(labels, 3, g)])
    assert abs((drawn == 1).mean() - 0.5) < 0.05  # minority drawn about as often as the majority


def _epochs(loader, g: torch.Generator, epochs: list[int]) -> list[torch.Tensor]:
    out = []
    for e in epochs:
        g.manual_seed(e)
        loader.sampler.set_epoch(e)
        out.append(torch.cat([x for x, _ in loader]))
    return out


def test_augmentation_depends_on_seed_and_epoch_not_on_workers(image_folder: Path) -> None:
    spec = PreprocessSpec.for_size(32)
    cache = DecodedCache(spec)
    paths = _paths(image_folder)
    ds = CachedImageDataset(cache.load_all(paths), [i % 3 for i in range(len(paths))], train_transform(spec))

    def loader(workers: int, seed: int = 0):
        g = torch.Generator()
        return build_train_loader(ds, batch_size=8, workers=workers, balance="none", num_classes=3,
                                  generator=g, seed=seed), g

    l0, g0 = loader(0)
    torch.manual_seed(123)  # the global RNG plays no part
    a1, a2, a1_again = _epochs(l0, g0, [1, 2, 1])
    assert torch.equal(a1, a1_again) and not torch.equal(a1, a2)
    l2, g2 = loader(2)  # persistent worker processes give the very same batches
    b1, b2 = _epochs(l2, g2, [1, 2])
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    l0s, g0s = loader(0, seed=5)
    assert not torch.equal(_epochs(l0s, g0s, [1])[0], a1)


@pytest.mark.realdata
def test_real_photos_eval_from_cache_equals_preprocess(real_data_dir: Path) -> None:
    spec = PreprocessSpec.for_size(128)
    cache = DecodedCache(spec)
    index, bad = readable_index(str(real_data_dir), None, False, cache)
    assert not bad and index.class_names == ["normal_skin", "vitiligo"]
    tf = eval_transform(spec)
    for s in index.samples[::40]:  # a spread of real JPEGs, both classes
        np.testing.assert_allclose(tf(cache.get(s.path)).numpy(), preprocess(load_rgb(s.path), spec), atol=1e-5)
