"""Outlier exposure's bank (hypoderm.engine.outliers): drawn on first use, the same pictures as drawn whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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


def _nonskin_manifest(root: Path, origins: dict[str, int], bad: int = 0) -> Path:
    """A small not-skin manifest like ../shared/data/nonskin/index.csv (path,label,group,origin), its photos drawn by
    `nonskin.picture`; `bad` extra rows point at files that are not images."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,group,origin"]
    seed = 0
    for origin, n in origins.items():
        for i in range(n):
            name = f"{origin}_{i}.jpg"
            nonskin.picture(nonskin.FAMILIES[seed % len(nonskin.FAMILIES)], seed).convert("RGB").save(root / name)
            rows.append(f"{name},not_skin,{origin}_{i},{origin}")
            seed += 1
    for i in range(bad):
        (root / f"broken_{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
        rows.append(f"broken_{i}.jpg,not_skin,broken_{i},broken")
    path = root / "index.csv"
    path.write_text("\n".join(rows) + "\n")
    Image.new("RGB", (4, 4)).save(root / "unlisted.png")  # a file the manifest does not list is not read
    return path


def test_real_bank_holds_each_photo_and_its_closeups_and_leaves_excluded_origins_out(tmp_path: Path) -> None:
    manifest = _nonskin_manifest(tmp_path / "nonskin", {"bread": 3, "cloth": 2})
    lines: list[str] = []
    bank = outliers.real_bank(manifest, SPEC, log=lines.append)
    assert len(bank) == 5 * (1 + outliers.REAL_CLOSEUPS)
    assert all(t.dtype == torch.uint8 and t.shape == (3, SPEC.resize_size, SPEC.resize_size) for t in bank)
    # the first square of each photo is its centre square, as the model's preprocessing would cut it
    from hypoderm.imaging.io import load_rgb

    first = load_rgb(tmp_path / "nonskin" / "bread_0.jpg", min_size=4 * SPEC.resize_size)  # as the bank decodes
    assert np.array_equal(bank[0].numpy().transpose(1, 2, 0), outliers._square(first, SPEC.resize_size))
    assert not np.array_equal(bank[0].numpy(), bank[1].numpy())  # a close-up differs from the whole
    held = outliers.real_bank(manifest, SPEC, exclude=["cloth"], log=lines.append)
    assert len(held) == 3 * (1 + outliers.REAL_CLOSEUPS)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(held, bank, strict=False))  # bread comes first
    assert "5 real photos" in lines[0] and "left out: cloth" in lines[1]


def test_real_bank_is_cached_whole_and_read_back(tmp_path: Path) -> None:
    manifest = _nonskin_manifest(tmp_path / "nonskin", {"bread": 2})
    first = outliers.real_bank(manifest, SPEC, cache_dir=tmp_path / "cache", log=lambda _: None)
    assert len(list((tmp_path / "cache").glob("outliers-real-*.npy"))) == 1
    again = outliers.real_bank(manifest, SPEC, cache_dir=tmp_path / "cache",
                               log=lambda line: pytest.fail(f"decoded again: {line}"))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(first, again, strict=True))


def test_real_bank_skips_unreadable_files_and_names_bad_origins(tmp_path: Path) -> None:
    from hypoderm.data.dataset import DatasetError

    manifest = _nonskin_manifest(tmp_path / "nonskin", {"bread": 2}, bad=2)
    lines: list[str] = []
    bank = outliers.real_bank(manifest, SPEC, log=lines.append)
    assert len(bank) == 2 * (1 + outliers.REAL_CLOSEUPS)
    assert "2 unreadable, skipped: broken_0.jpg" in lines[0]
    with pytest.raises(DatasetError, match="origin.*the manifest does not have: kitchen"):
        outliers.real_bank(manifest, SPEC, exclude=["kitchen"])
    with pytest.raises(DatasetError, match="none of its 2 outlier photos could be decoded"):
        outliers.real_bank(manifest, SPEC, exclude=["bread"])


def test_training_mixes_the_real_photos_into_the_outlier_batches(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run with --outliers shows them: the bank the loop draws from is the synthetic one plus the real squares,
    and the run's config records the manifest and the excluded origins."""
    from hypoderm.cli import main
    from hypoderm_testkit.datasets import make_image_folder

    data = make_image_folder(tmp_path / "data", per_class=6, size=40)
    manifest = _nonskin_manifest(tmp_path / "nonskin", {"bread": 2, "cloth": 1})
    out = tmp_path / "run"
    rc = main(["train", "--data", str(data), "--model", "mnv3s", "--size", "32", "--epochs", "1", "--batch-size", "8",
               "--max-steps", "1", "--outlier-exposure", "0.5", "--outliers", str(manifest), "--outliers-exclude",
               "cloth", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert rc == 0
    log = capsys.readouterr().out
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert ckpt["config"]["outliers"] == str(manifest) and ckpt["config"]["outliers_exclude"] == "cloth"
    n_synthetic = len(outliers.OutlierBank(SPEC, per_family=60))
    assert "outliers: 2 real photos" in log and "left out: cloth" in log
    assert f"outlier exposure: {n_synthetic + 2 * (1 + outliers.REAL_CLOSEUPS)} pictures" in log
    # the exported metadata says what the model saw that is not skin, without the folders of this machine
    from hypoderm.inference.metadata import metadata_from_checkpoint

    seen = metadata_from_checkpoint(ckpt)["training_data"]["outliers"]
    assert seen["weight"] == 0.5 and seen["excluded_origins"] == ["cloth"]
    assert seen["real_photos"].startswith("nonskin/index.csv [sha256:") and str(tmp_path) not in seen["real_photos"]


def test_outliers_flags_are_checked() -> None:
    from hypoderm.engine.config import TrainConfig
    from hypoderm.errors import UsageError

    with pytest.raises(UsageError, match="give --outliers too"):
        TrainConfig(data="x", outliers_exclude="bakery")
    with pytest.raises(UsageError, match="needs --outlier-exposure > 0"):
        TrainConfig(data="x", outliers="n.csv", outlier_exposure=0.0)
