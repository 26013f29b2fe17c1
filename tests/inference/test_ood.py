"""The torch-free OOD check: skin-colour rule on drawn non-skin pictures vs synthetic skin, the
not-skin gate (definitions, parameters, the browser port) and the max-logit threshold fit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm.inference.ood import (
    DEFAULT_GATE,
    DEFAULT_SKIN_FRACTION_MIN,
    FEATURE_NAMES,
    GateParameterError,
    at_gate_size,
    fit_ood_thresholds,
    gate_features,
    gate_score,
    ood_check,
    skin_fraction,
    validate_gate,
    with_gate,
)
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, resized_uint8
from hypoderm_testkit.export import non_skin_pictures, skin_image


def _crop(img) -> np.ndarray:
    spec = PreprocessSpec.for_size(64)
    return center_crop_array(resized_uint8(img, spec), spec.size)


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


def test_max_logit_floor_withholds_the_answer_but_never_refuses() -> None:
    """A weak max logit is the network's own doubt: the photo is analysed but gets no answer (status
    uncertain), it is never called "not skin" (refusing a real photo is the worst outcome)."""
    crop = _crop(skin_image(0, np.random.default_rng(0), 80))
    th = {"skin_fraction_min": 0.05, "max_logit_min": 2.0, "gate": None}  # the floor alone
    high = ood_check(crop, np.array([3.0, 0.0]), th)
    assert high["is_skin"] is True and high["answerable"] is True and high["reason"] is None
    low = ood_check(crop, np.array([1.0, 0.5]), th)
    assert low["is_skin"] is True and low["answerable"] is False and low["reason"] == "unusual_logits"
    assert low["max_logit"] == 1.0


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

    code = "import sys, hypoderm.inference.ood, hypoderm.inference; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.realdata
def test_real_photos_pass_the_skin_rule(real_data_dir: Path) -> None:
    from hypoderm.imaging.io import load_rgb

    files = sorted(real_data_dir.rglob("*.jpg"))
    assert files
    spec = PreprocessSpec()
    fracs = np.array([skin_fraction(center_crop_array(resized_uint8(load_rgb(f), spec), spec.size)) for f in files])
    assert (fracs >= DEFAULT_SKIN_FRACTION_MIN).mean() >= 0.99


# ---- the not-skin gate ------------------------------------------------------------------------

def test_gate_features_follow_the_documented_definitions() -> None:
    flat = gate_features(np.full((64, 64, 3), (224, 172, 140), np.uint8))
    assert flat["skin_fraction"] == 1.0 and flat["skin_blocks"] == 1.0
    assert flat["grad_rms"] == 0.0 and flat["smooth_ratio"] == 1.0 and flat["orient_global"] == 0.0
    assert flat["texture_cv"] == 0.0 and flat["luma_sd"] == 0.0
    assert flat["luma_mean"] == pytest.approx(0.299 * 224 + 0.587 * 172 + 0.114 * 140)
    assert flat["skin_chroma_sd"] == pytest.approx(0.0, abs=1e-4)  # E[x^2] - E[x]^2 of x ~ 150: rounding only
    assert flat["hue_coherence"] == pytest.approx(1.0, abs=1e-12)
    y = 0.299 * 224 + 0.587 * 172 + 0.114 * 140
    assert flat["skin_cr"] == pytest.approx(128 + 0.713 * (224 - y))
    assert flat["skin_cb"] == pytest.approx(128 + 0.564 * (140 - y))
    # vertical stripes: all gradient energy along x, perfectly coherent; period 2 -> step-2 differences vanish
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 200
    f = gate_features(stripes)
    assert f["orient_global"] == pytest.approx(1.0) and f["orient_block"] == pytest.approx(1.0)
    assert f["smooth_ratio"] == 0.0 and f["skin_fraction"] == 0.0
    # a rainbow spreads chroma over all hues: low coherence, unlike a skin-toned gradient
    from hypoderm.data import nonskin

    hsv = np.stack(np.broadcast_arrays(np.arange(256, dtype=np.uint8)[None, :].repeat(64, 0), np.uint8(255),
                                       np.uint8(255)), -1)
    hues = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
    assert gate_features(hues)["hue_coherence"] < 0.3
    tone = gate_features(np.asarray(nonskin.gradients(np.random.default_rng(1), 64, 64, 1.0)
                                    .clip(0, 255).astype(np.uint8)))  # any gradient family member
    assert 0.0 <= tone["hue_coherence"] <= 1.0
    # only whole blocks count (16 px in the shipped gate), at least 2 x 2 of them
    assert DEFAULT_GATE["block"] == 16
    assert gate_features(np.zeros((47, 50, 3), np.uint8)) == gate_features(np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="too small for the not-skin gate"):
        gate_features(np.zeros((31, 64, 3), np.uint8))
    # the block size and the skin rule come from the gate block
    eights = {"block": 8, "skin_rule": DEFAULT_GATE["skin_rule"]}
    assert gate_features(np.zeros((16, 16, 3), np.uint8), eights)["skin_blocks"] == 0.0
    nothing_is_skin = {"block": 16, "skin_rule": {"cr": [0.0, 1.0], "cb": [0.0, 1.0]}}
    assert gate_features(np.full((64, 64, 3), (224, 172, 140), np.uint8), nothing_is_skin)["skin_fraction"] == 0.0
    with pytest.raises(ValueError, match="uint8"):
        gate_features(np.zeros((64, 64, 3), np.float32))


def test_sums_are_sequential_like_a_javascript_loop() -> None:
    from hypoderm.inference.ood import _seqsum

    values = np.random.default_rng(0).normal(0, 1e6, 5000) ** 3
    loop = 0.0
    for v in values:
        loop += float(v)
    assert float(_seqsum(values)) == loop  # bit for bit, where np.sum (pairwise) usually differs


def test_gate_score_is_bias_plus_linear_plus_pairwise_terms() -> None:
    n = len(FEATURE_NAMES)
    gate = {**DEFAULT_GATE, "features": list(FEATURE_NAMES), "sqrt_features": ["grad_rms"], "mean": [1.0] * n,
            "scale": [2.0] * n, "linear": [0.0] * n, "quadratic": [0.0] * (n * (n + 1) // 2), "bias": 0.5}
    gate["linear"][FEATURE_NAMES.index("skin_fraction")] = 3.0
    gate["quadratic"][0] = 4.0  # (skin_fraction, skin_fraction)
    i = FEATURE_NAMES.index("grad_rms")
    gate["quadratic"][sum(n - k for k in range(i))] = 1.0  # (grad_rms, grad_rms)
    feats = dict.fromkeys(FEATURE_NAMES, 1.0) | {"skin_fraction": 0.2, "grad_rms": 25.0}
    z_sf, z_g = (0.2 - 1.0) / 2.0, (5.0 - 1.0) / 2.0
    assert gate_score(feats, validate_gate(gate)) == pytest.approx(0.5 + 3.0 * z_sf + 4.0 * z_sf ** 2 + z_g ** 2)
    # a gate may use fewer statistics, in any order
    two = {**gate, "features": ["grad_rms", "skin_fraction"], "mean": [1.0, 1.0], "scale": [2.0, 2.0],
           "linear": [0.0, 3.0], "quadratic": [1.0, 0.0, 4.0]}
    assert gate_score(feats, validate_gate(two)) == pytest.approx(0.5 + 3.0 * z_sf + 4.0 * z_sf ** 2 + z_g ** 2)


def test_checks_refuse_withhold_or_answer_in_their_order() -> None:
    """too dark, then too little skin, then not skin-like (refused); then unsure skin and a weak max logit
    (answer withheld); otherwise answerable. Each reason is produced by the check it names."""
    flat = np.full((128, 128, 3), (224, 172, 140), np.uint8)
    base = {"skin_fraction_min": 0.05, "max_logit_min": -1e9}
    lenient = {**DEFAULT_GATE, "threshold": -1e9, "answer_threshold": -1e9}

    def reason(crop: np.ndarray, gate: dict, logits: tuple = (3.0, 0.0), **ood) -> str | None:
        out = ood_check(crop, np.array(logits), {**base, **ood, "gate": gate})
        assert out["is_skin"] == (out["reason"] not in ("too_dark", "little_skin", "not_skin_like"))
        assert out["answerable"] == (out["reason"] is None)
        return out["reason"]

    assert reason(flat, lenient) is None
    assert reason(flat // 10, lenient) == "too_dark"  # mean luma about 17 < luma_min
    assert reason(np.full((128, 128, 3), 128, np.uint8), lenient) == "little_skin"  # grey: no skin pixel
    score = gate_score(gate_features(flat), DEFAULT_GATE)
    assert reason(flat, {**lenient, "threshold": score + 1, "answer_threshold": score + 1}) == "not_skin_like"
    assert reason(flat, {**lenient, "answer_threshold": score + 1}) == "unsure_skin"
    assert reason(flat, lenient, logits=(0.5, 0.0), max_logit_min=1.0) == "unusual_logits"


def test_gate_refuses_or_withholds_skin_coloured_textures_the_colour_rule_accepts() -> None:
    from hypoderm.data import nonskin

    spec = PreprocessSpec.for_size(DEFAULT_GATE["size"])
    passed_colour, answered = 0, 0
    for fam in ("wood", "sand", "walls", "plastics", "fabrics", "paper"):
        for seed in range(4):
            crop = center_crop_array(resized_uint8(nonskin.picture(fam, seed), spec), spec.size)
            old = ood_check(crop, np.array([5.0, -1.0]), {"gate": None})
            new = ood_check(crop, np.array([5.0, -1.0]), None)
            assert old["skin_fraction"] == pytest.approx(new["skin_fraction"]) and old["gate_score"] is None
            passed_colour += old["is_skin"]
            answered += old["is_skin"] and new["answerable"]
    assert passed_colour >= 12  # the colour rule alone lets most of them through
    assert 3 * answered <= passed_colour, (answered, passed_colour)  # at least two thirds stopped before the model


@pytest.mark.parametrize("bad, match", [
    ({"format": "x"}, "format"),
    ({"size": 8}, "size must be an integer in 32..512"),
    ({"block": 1}, "block must be an integer in 2..64"),
    ({"skin_rule": {"cr": [173, 133], "cb": [77, 127]}}, "skin_rule"),
    ({"skin_rule": {"cr": [133, 173]}}, "skin_rule"),
    ({"features": ["colour"]}, "features must list distinct statistics"),
    ({"features": ["skin_fraction", "skin_fraction"]}, "features must list distinct statistics"),
    ({"mean": [0.0] * 3}, "mean must be a list of 17 finite numbers"),
    ({"quadratic": [float("nan")] * 153}, "quadratic must be a list of 153"),
    ({"scale": [0.0] * 17}, "scale must be > 0"),
    ({"threshold": "high"}, "threshold must be a finite number"),
    ({"answer_threshold": None}, "answer_threshold must be a finite number"),
    ({"answer_threshold": -1e9}, "answer_threshold must be >= ood.gate.threshold"),
    ({"luma_min": float("nan")}, "luma_min must be a finite number"),
    ({"sqrt_features": ["colour"]}, "sqrt_features"),
])
def test_bad_gate_parameters_are_named(bad: dict, match: str) -> None:
    with pytest.raises(GateParameterError, match=match):
        validate_gate({**DEFAULT_GATE, **bad})
    from hypoderm.inference import ModelLoadError, validate_metadata

    md = {"format": "hypoderm-onnx/1", "class_names": ["a", "b"], "input": PreprocessSpec.for_size(64).to_dict(),
          "temperature": 1.0, "abstain_threshold": 0.5, "ood": {"gate": {**DEFAULT_GATE, **bad}}}
    with pytest.raises(ModelLoadError, match="bad ood block"):
        validate_metadata(md)


def test_models_exported_before_the_gate_get_the_default_gate() -> None:
    old = {"skin_fraction_min": 0.05, "max_logit_min": -1e9}
    assert with_gate(old)["gate"] is DEFAULT_GATE and with_gate(None)["gate"] is DEFAULT_GATE
    assert with_gate({**old, "gate": None})["gate"] is None  # explicitly off stays off
    crop = center_crop_array(resized_uint8(skin_image(1, np.random.default_rng(2), 224), PreprocessSpec()), 224)
    out = ood_check(crop, np.array([1.0, 0.0]), old)  # a 224 px crop: the gate resizes it to its 128 px first
    assert out["gate_score"] == gate_score(gate_features(at_gate_size(crop, DEFAULT_GATE["size"])), DEFAULT_GATE)
    assert set(out) == {"skin_fraction", "gate_score", "skin_score", "max_logit", "luma_mean", "is_skin", "answerable",
                        "reason"}
    assert out["skin_score"] is None  # no learned check given


def test_a_first_format_gate_still_loads_and_scores() -> None:
    """Models exported with a hypoderm-gate/1 block (224 px, fixed block and skin rule, one threshold)."""
    n = len(FEATURE_NAMES)
    v1 = {"format": "hypoderm-gate/1", "size": 224, "features": list(FEATURE_NAMES), "sqrt_features": [],
          "mean": [0.0] * n, "scale": [1.0] * n, "linear": [0.0] * n, "quadratic": [0.0] * (n * (n + 1) // 2),
          "bias": 1.0, "threshold": 0.5}
    validate_gate(v1)
    crop = center_crop_array(resized_uint8(skin_image(0, np.random.default_rng(3), 300), PreprocessSpec()), 224)
    out = ood_check(crop, np.array([1.0, 0.0]), {"gate": v1})
    assert out["gate_score"] == 1.0 and out["reason"] is None  # bias 1.0 >= threshold 0.5, no answer threshold


def test_bundled_model_metadata_carries_the_fitted_gate() -> None:
    import json

    from hypoderm.inference import bundled_model, load_metadata

    md = json.loads(bundled_model().with_suffix(".json").read_text())
    assert md["ood"]["gate"] == DEFAULT_GATE
    load_metadata(bundled_model())  # validates


def test_export_writes_the_gate_and_refuses_a_bad_one(tmp_path: Path) -> None:
    """The exporter completes the `ood` block with the default gate (keeping fitted floors, and an
    explicit `gate: null`) and refuses malformed gate parameters with a named field."""
    import json

    from hypoderm_testkit.app import build_model_dir

    build_model_dir(tmp_path / "a", extra={"ood": {"max_logit_min": 0.25, "n": 62}})
    ood = json.loads((tmp_path / "a" / "model.json").read_text())["ood"]
    assert ood["gate"] == DEFAULT_GATE and ood["max_logit_min"] == 0.25 and ood["n"] == 62
    assert ood["skin_fraction_min"] == DEFAULT_SKIN_FRACTION_MIN
    build_model_dir(tmp_path / "b", extra={"ood": {"gate": None}})
    assert json.loads((tmp_path / "b" / "model.json").read_text())["ood"]["gate"] is None
    with pytest.raises(GateParameterError, match="ood.gate.bias"):
        build_model_dir(tmp_path / "c", extra={"ood": {"gate": {**DEFAULT_GATE, "bias": float("inf")}}})
