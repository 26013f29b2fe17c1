"""The torch-free OOD check: skin-colour rule on drawn non-skin pictures vs synthetic skin, and
the max-logit threshold fit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from helpers_export import non_skin_pictures, skin_image
from hypoderm.ood import DEFAULT_SKIN_FRACTION_MIN, fit_ood_thresholds, ood_check, skin_fraction, skin_mask
from hypoderm.preprocess import PreprocessSpec, center_crop_array, resized_uint8


def _crop(img) -> np.ndarray:
    spec = PreprocessSpec.for_size(64)
    return center_crop_array(resized_uint8(img, spec), spec.size)


def test_rule_matches_the_documented_formula_pixel_by_pixel() -> None:
    # (R, G, B) -> expected skin: hand-computed with Y/Cr/Cb of the module docstring
    cases = {(224, 172, 140): True,   # Cr 156.6, Cb 103.2
             (120, 80, 60): True,     # Cr 149.6, Cb 111.3
             (255, 255, 255): False,  # Cr 128 (neutral)
             (40, 160, 60): False,    # green
             (60, 90, 200): False}    # blue
    arr = np.array([list(cases)], dtype=np.uint8)
    assert skin_mask(arr)[0].tolist() == list(cases.values())


@pytest.mark.parametrize("seed", range(4))
def test_synthetic_skin_passes_the_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for label in (0, 1):  # plain skin and skin with large depigmented patches
        assert skin_fraction(_crop(skin_image(label, rng, 80))) >= 0.3


@pytest.mark.parametrize("name", list(non_skin_pictures()))
def test_drawn_non_skin_pictures_fail_the_rule(name: str) -> None:
    img = non_skin_pictures()[name]
    frac = skin_fraction(_crop(img))
    assert frac < DEFAULT_SKIN_FRACTION_MIN, f"{name}: {frac:.3f}"
    assert ood_check(_crop(img), np.array([5.0, -1.0]), None)["is_skin"] is False


def test_max_logit_floor_rejects_even_skin_coloured_input() -> None:
    crop = _crop(skin_image(0, np.random.default_rng(0), 80))
    th = {"skin_fraction_min": 0.05, "max_logit_min": 2.0}
    assert ood_check(crop, np.array([3.0, 0.0]), th)["is_skin"] is True
    low = ood_check(crop, np.array([1.0, 0.5]), th)
    assert low["is_skin"] is False and low["max_logit"] == 1.0


def test_fit_ood_thresholds_takes_the_quantile() -> None:
    values = np.arange(100, dtype=float)  # max logits of 100 validation photos
    th = fit_ood_thresholds(values, quantile=0.05)
    assert th["max_logit_min"] == pytest.approx(np.quantile(values, 0.05))
    assert (values < th["max_logit_min"]).mean() == pytest.approx(0.05)
    assert th["fitted_on"] == 100 and th["skin_fraction_min"] == DEFAULT_SKIN_FRACTION_MIN
    assert fit_ood_thresholds(values[:5])["max_logit_min"] == -1e9  # too few to fit: permissive
    with pytest.raises(ValueError, match="quantile"):
        fit_ood_thresholds(values, quantile=0.7)


def test_ood_module_is_torch_free() -> None:
    import subprocess

    code = "import sys, hypoderm.ood, hypoderm.inference; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.realdata
def test_real_photos_pass_the_skin_rule(real_data_dir: Path) -> None:
    from hypoderm.data.io import load_rgb

    files = sorted(real_data_dir.rglob("*.jpg"))
    assert files
    spec = PreprocessSpec()
    fracs = np.array([skin_fraction(center_crop_array(resized_uint8(load_rgb(f), spec), spec.size)) for f in files])
    assert (fracs >= DEFAULT_SKIN_FRACTION_MIN).mean() >= 0.99
