"""hypoderm.imaging.colour: the one skin-colour rule, CIELAB both ways, the ITA skin-tone angle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypoderm.imaging.colour import CHAI_NGAN_RULE, SKIN_RULE, ita_degrees, lab_to_rgb, rgb_to_lab, skin_mask


def test_lab_matches_reference_values() -> None:
    # CIELAB (D65) of the sRGB primaries, as published for the sRGB standard
    lab = rgb_to_lab(np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], dtype=np.uint8))
    np.testing.assert_allclose(lab[:, 0], [53.24, 87.73, 32.30, 100.0], atol=0.02)
    np.testing.assert_allclose(lab[:, 1], [80.09, -86.18, 79.19, 0.0], atol=0.02)
    np.testing.assert_allclose(lab[:, 2], [67.20, 83.18, -107.86, 0.0], atol=0.02)
    assert ita_degrees(53.24, 67.20) == pytest.approx(math.degrees(math.atan(3.24 / 67.20)))
    assert ita_degrees(70.0, 0.0) == pytest.approx(90.0)  # b* <= 0: no division by zero, no sign flip


def test_lab_round_trip_returns_the_pixels() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    assert np.abs(lab_to_rgb(rgb_to_lab(rgb)).astype(int) - rgb).max() <= 1
    assert lab_to_rgb(np.array([[150.0, 0.0, 0.0], [-20.0, 0.0, 0.0]])).tolist() == [[255, 255, 255], [0, 0, 0]]


def test_skin_rule_is_the_shipped_gates_and_matches_the_formula() -> None:
    import json
    from importlib import resources

    gate = json.loads((resources.files("hypoderm") / "assets" / "nonskin_gate.json").read_text())
    assert SKIN_RULE == {k: [float(x) for x in v] for k, v in gate["skin_rule"].items()} == CHAI_NGAN_RULE
    # (R, G, B) -> skin, hand-computed: Cr 156.6 / Cb 103.2; Cr 149.6 / Cb 111.3; neutral; green; blue
    cases = {(224, 172, 140): True, (120, 80, 60): True, (255, 255, 255): False, (40, 160, 60): False,
             (60, 90, 200): False}
    assert skin_mask(np.array([list(cases)], dtype=np.uint8))[0].tolist() == list(cases.values())
    assert not skin_mask(np.array([[[224, 172, 140]]], np.uint8), {"cr": [0, 1], "cb": [0, 1]}).any()
    with pytest.raises(ValueError, match="3 channels"):
        skin_mask(np.zeros((4, 4), np.uint8))
