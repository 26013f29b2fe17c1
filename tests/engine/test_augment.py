"""Anti-shortcut augmentations and the style-shift views (issue 11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hypoderm.engine.augment import (
    Counterfactual,
    Degrade,
    SkinGuidedCrop,
    ToneShift,
    from_lab,
    is_lesion_free,
    paint_depigmented_patch,
    skin_or_pale_mask,
    to_lab,
)
from hypoderm.engine.config import RECIPES, TrainConfig
from hypoderm.engine.data import train_transform
from hypoderm.engine.styleshift import VIEWS, build_views, masked_background, view_metrics
from hypoderm.inference.preprocess import PreprocessSpec

SKIN = (200, 150, 120)  # passes the YCrCb skin rule
BLUE = (40, 80, 200)  # fails it


def _scene(h: int = 120, w: int = 200) -> torch.Tensor:
    """Blue background with a skin-coloured rectangle in the right third and a white patch inside it."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:] = BLUE
    arr[20:100, 140:195] = SKIN
    arr[50:70, 160:180] = (250, 248, 245)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def test_skin_mask_finds_the_skin_and_grows_into_pale_patches() -> None:
    img = _scene()
    strict = skin_or_pale_mask(img, grow=0)
    assert strict[30, 150] and not strict[10, 10] and not strict[60, 170]
    assert skin_or_pale_mask(img, grow=15)[60, 170]  # the depigmented patch inside the skin
    assert not skin_or_pale_mask(img, grow=15)[10, 10]


def test_skin_guided_crop_is_centred_on_skin() -> None:
    torch.manual_seed(0)
    img = _scene()
    crop = SkinGuidedCrop(32, scale=(0.3, 0.3), p_skin=1.0)
    skin_share = [skin_or_pale_mask(crop(img), grow=0).float().mean().item() for _ in range(40)]
    assert all(c.shape == (3, 32, 32) for c in [crop(img)])
    # the skin covers ~18% of the image; crops centred on it are mostly skin
    assert np.mean(skin_share) > 0.6
    with pytest.raises(ValueError, match="scale"):
        SkinGuidedCrop(32, scale=(0.0, 0.5))


def test_lab_round_trip_on_tensors_is_exact_to_one_level() -> None:
    x = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    lab = to_lab(x)
    assert lab.shape == (3, 16, 16) and lab.dtype == torch.float32
    back = from_lab(lab)
    assert back.dtype == torch.uint8 and (back.int() - x.int()).abs().max() <= 1


def _mean_skin_lab(img: torch.Tensor) -> torch.Tensor:
    lab = to_lab(img)
    return lab[:, skin_or_pale_mask(img, grow=0)].mean(1)


def test_tone_shift_moves_skin_tone_to_the_target_range_and_keeps_patch_contrast() -> None:
    arr = np.zeros((40, 40, 3), np.uint8)
    arr[:] = SKIN
    arr[10:20, 10:20] = (235, 225, 215)  # a paler patch
    img = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    lab0 = to_lab(img)
    contrast0 = (lab0[0, 10:20, 10:20].mean() - lab0[0, 25:, 25:].mean()).item()
    shift = ToneShift(p=1.0, lightness=(40.0, 45.0), yellowness=(10.0, 12.0))
    torch.manual_seed(1)
    out = shift(img)
    lab = to_lab(out)
    skin_l = lab[0, 25:, 25:].mean().item()
    assert 38.0 <= skin_l <= 47.0  # moved from ~67 into the target band
    contrast = (lab[0, 10:20, 10:20].mean() - lab[0, 25:, 25:].mean()).item()
    assert contrast == pytest.approx(contrast0, abs=1.5)  # the lesion's lightness contrast is kept
    assert ToneShift(p=0.0)(img) is img


def test_degrade_keeps_shape_and_dtype() -> None:
    torch.manual_seed(0)
    img = _scene()
    out = Degrade(p=1.0)(img)
    assert out.shape == img.shape and out.dtype == torch.uint8
    assert not torch.equal(out, img)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_recipe_gives_a_normalised_float_crop(recipe: str) -> None:
    spec = PreprocessSpec.for_size(32)
    torch.manual_seed(0)
    x, label = train_transform(spec, recipe)(_scene(), 0)
    assert label == 0
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_unknown_recipe_is_refused_and_old_configs_mean_standard() -> None:
    with pytest.raises(ValueError, match="recipe"):
        TrainConfig(data="x", recipe="magic")
    with pytest.raises(ValueError, match="unknown recipe"):
        train_transform(PreprocessSpec.for_size(32), "magic")
    old = TrainConfig(data="x").to_dict()
    del old["recipe"]
    assert TrainConfig.from_dict(old).recipe == "standard"
    assert TrainConfig(data="x").recipe == "crop-tone"


def test_style_shift_views_are_deterministic_and_remove_the_background() -> None:
    spec = PreprocessSpec.for_size(32)
    imgs = [_scene(), _scene(100, 160)]
    a = build_views(imgs, ["p/one.jpg", "p/two.jpg"], spec)
    b = build_views(imgs, ["p/one.jpg", "p/two.jpg"], spec)
    assert set(a) == set(VIEWS)
    for v in VIEWS:
        assert all(torch.equal(x, y) for x, y in zip(a[v][0], b[v][0], strict=True))
        assert all(x.shape == (3, 32, 32) and x.dtype == torch.uint8 for x in a[v][0])
    assert list(a["closeup"][1]) == [0, 0, 0, 1, 1, 1]
    # another key gives other crops
    c = build_views(imgs, ["p/other.jpg", "p/two.jpg"], spec, views=["closeup"])
    assert not all(torch.equal(x, y) for x, y in zip(a["closeup"][0][:3], c["closeup"][0][:3], strict=True))
    masked = masked_background(_scene(), 120)
    blue = (masked[0] == BLUE[0]) & (masked[1] == BLUE[1]) & (masked[2] == BLUE[2])
    assert not blue.any()  # the blue background is grey now
    with pytest.raises(ValueError, match="unknown style-shift view"):
        build_views(imgs, ["a", "b"], spec, views=["sepia"])


def test_view_metrics() -> None:
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.55, 0.45]])
    y = np.array([0, 1, 1, 1])
    m = view_metrics(probs, y, threshold=0.7)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["answered"] == pytest.approx(0.5) and m["answered_accuracy"] == pytest.approx(1.0)
    assert m["per_class_recall"] == [pytest.approx(1.0), pytest.approx(2 / 3)]


def test_synthetic_macule_is_pale_and_on_the_skin() -> None:
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[:] = SKIN
    img = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    g = torch.Generator().manual_seed(3)
    out = paint_depigmented_patch(img, g)
    lab0, lab = to_lab(img), to_lab(out)
    changed = (lab[0] - lab0[0]) > 8
    assert 0.02 < changed.float().mean() < 0.9  # a macule, not the whole crop
    assert lab[0][changed].mean() > lab0[0].mean() + 10  # lighter
    chroma0 = torch.hypot(lab0[1], lab0[2]).mean()
    assert torch.hypot(lab[1], lab[2])[changed].mean() < 0.7 * chroma0  # paler
    assert not is_lesion_free(out) and is_lesion_free(img)


def test_counterfactual_changes_labels_both_ways() -> None:
    """Lesion-free crops of any other class become normal; normal crops (relabelled ones too) may get a macule."""
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[:] = SKIN
    plain = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    cf = Counterfactual(normal=0, lesion=1, p=1.0)
    torch.manual_seed(0)
    painted, label = cf(plain, 0)
    assert label == 1 and not torch.equal(painted, plain)
    never_paint = Counterfactual(normal=0, lesion=1, p=0.0)
    assert never_paint(plain, 1) == (plain, 0)  # a lesion photo's close-up without a lesion is normal skin
    assert never_paint(plain, 2) == (plain, 0)  # of any lesion class (a third class: other lesions)
    relabelled_then_painted, label = cf(plain, 2)  # healthy skin of a lesion source can get a macule too
    assert label == 1 and not torch.equal(relabelled_then_painted, plain)
    spotted = paint_depigmented_patch(plain, torch.Generator().manual_seed(1))
    assert never_paint(spotted, 1)[1] == 1  # one with a macule keeps its label
    assert never_paint(plain, 0)[1] == 0
    with pytest.raises(ValueError, match="differ"):
        Counterfactual(1, 1)
    with pytest.raises(ValueError, match="NORMAL:LESION"):
        TrainConfig(data="x", counterfactual="normal_skin")
