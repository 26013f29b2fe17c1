"""static/js/ood.js (and skincheck.js) = hypoderm.inference.ood (and skincheck): the same statistics, score, reason and
verdict for the same crop, bit for bit where the arithmetic is the module docstring's."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hypoderm.imaging.colour import SKIN_RULE
from hypoderm.inference.ood import (
    DEFAULT_GATE,
    DEFAULT_SKIN_FRACTION_MIN,
    FEATURE_NAMES,
    default_gate,
    gate_features,
    gate_score,
    ood_check,
    skin_fraction,
)
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, resized_uint8
from hypoderm.inference.skincheck import FORMAT, OUTPUT
from hypoderm_testkit.export import skin_image
from parity.harness import needs_node, run_js

pytestmark = needs_node


def _gate_crops() -> dict[str, np.ndarray]:
    """Skin-like and non-skin crops of several sizes (including ones that are not whole blocks)."""
    from hypoderm.data import nonskin

    rng = np.random.default_rng(0)
    spec = PreprocessSpec.for_size(DEFAULT_GATE["size"])
    crops = {f"{fam}_{i}": center_crop_array(resized_uint8(nonskin.picture(fam, 900 + i), spec), spec.size)
             for fam in nonskin.FAMILIES for i in range(2)}
    crops["vitiligo_like"] = center_crop_array(resized_uint8(skin_image(1, rng, 224), spec), spec.size)
    crops["dark"] = (center_crop_array(resized_uint8(skin_image(0, rng, 224), spec), spec.size) // 12).astype(np.uint8)
    crops["noise_100x70"] = rng.integers(0, 256, (70, 100, 3)).astype(np.uint8)
    crops["flat_grey"] = np.full((64, 64, 3), 128, np.uint8)
    crops["flat_skin"] = np.broadcast_to(np.array([224, 172, 140], np.uint8), (48, 80, 3)).copy()
    small = PreprocessSpec.for_size(64)  # a model with 64 px input: the gate resizes its crop to 128 first
    crops["vitiligo_like_64"] = center_crop_array(resized_uint8(skin_image(1, rng, 80), small), small.size)
    crops["wood_64"] = center_crop_array(resized_uint8(nonskin.picture("wood", 77), small), small.size)
    return crops


def test_js_gate_matches_python_bit_for_bit() -> None:
    """ood.js computes the same statistics, score, verdict and reason as hypoderm.inference.ood, with every constant
    taken from the gate block (the shipped one, and one with another block size and skin rule, so a constant copied
    into the JS would show), and the same skin-colour share by the shipped rule."""
    crops = _gate_crops()
    other = {**DEFAULT_GATE, "block": 8, "skin_rule": {"cr": [130.0, 170.0], "cb": [80.0, 125.0]}, "luma_min": 30.0}
    oods = {"shipped": {"skin_fraction_min": DEFAULT_SKIN_FRACTION_MIN, "max_logit_min": -1e9, "gate": DEFAULT_GATE},
            "other": {"skin_fraction_min": 0.2, "max_logit_min": 2.0, "gate": other},
            "off": {"skin_fraction_min": 0.05, "max_logit_min": -1e9, "gate": None}}
    got = run_js("""
      const out = {};
      for (const [name, c] of Object.entries(crops)) {
        out[name] = { fraction: m.ood.skinFraction(c.rgb, rule) };
        for (const [k, ood] of Object.entries(oods)) {
          const f = ood.gate ? m.ood.gateFeatures(c.rgb, c.w, c.h, ood.gate) : null;
          const check = c.w === c.h ? m.ood.oodCheck(c.rgb, c.w, [1.0, 0.0], ood) : null;
          out[name][k] = { f, score: f ? m.ood.gateScore(f, ood.gate) : null, check };
        }
      }
      return out;""", crops={n: {"rgb": c, "w": c.shape[1], "h": c.shape[0]} for n, c in crops.items()}, oods=oods,
                 rule=SKIN_RULE)
    reasons = set()
    for name, crop in crops.items():
        assert got[name]["fraction"] == skin_fraction(crop), name
        for key, ood in oods.items():
            js = got[name][key]
            if ood["gate"] is not None:
                want = gate_features(crop, ood["gate"])
                for k in (*FEATURE_NAMES, "luma_mean"):
                    assert abs(js["f"][k] - want[k]) <= 1e-9, (name, key, k, js["f"][k], want[k])
                assert abs(js["score"] - gate_score(want, ood["gate"])) <= 1e-9, (name, key)
            if js["check"] is not None:
                py = ood_check(crop, np.array([1.0, 0.0]), ood)
                assert {k: js["check"][k] for k in ("is_skin", "answerable", "reason")} == \
                    {k: py[k] for k in ("is_skin", "answerable", "reason")}, (name, key)
                if py["gate_score"] is not None:
                    assert abs(js["check"]["gate_score"] - py["gate_score"]) <= 1e-9
                reasons.add(py["reason"])
    assert {None, "too_dark", "not_skin_like", "little_skin", "unusual_logits"} <= reasons  # the checks were exercised


def _photo(rgb: tuple[int, int, int], size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.asarray(Image.fromarray(np.clip(np.array(rgb) + rng.normal(0, 12, (size, size, 3)), 0, 255)
                                      .astype(np.uint8)), np.uint8)


def test_js_verdict_with_the_skin_check_matches_python() -> None:
    """ood.js oodCheck (with skincheck.js) takes the learned check's score as hypoderm.inference.ood does: the same
    reason for every crop, score and block, the statistics' refusal downgraded the same way."""
    check = {"format": FORMAT, "output": OUTPUT, "threshold": -1.0, "answer_threshold": 0.0}
    crops = {"skin": _photo((200, 150, 120)), "blue": _photo((40, 90, 220))}
    shipped = {"skin_fraction_min": DEFAULT_SKIN_FRACTION_MIN, "max_logit_min": -1e9, "gate": default_gate()}
    refusing = {"skin_fraction_min": 0.0, "max_logit_min": -1e9,  # a gate that refuses every crop
                "gate": {**default_gate(), "threshold": 1e5, "answer_threshold": 1e5}}
    oods = {"shipped": {**shipped, "skin_check": check}, "stats_refuse": {**refusing, "skin_check": check},
            "no_check": shipped}
    scores = [None, -3.0, -0.5, 0.0, 2.0]
    got = run_js("""
      const out = [];
      for (const [c, crop] of Object.entries(crops)) {
        for (const [k, ood] of Object.entries(oods)) {
          for (const s of scores) {
            const r = m.ood.oodCheck(crop, 128, [2.0, 0.0, 0.0], ood, s);
            out.push([c, k, s, r.reason, r.is_skin, r.answerable, r.skin_score]);
          }
        }
      }
      return out;""", crops=crops, oods=oods, scores=scores)
    reasons = set()
    for c, k, s, reason, is_skin, answerable, echoed in got:
        py = ood_check(crops[c], np.array([2.0, 0.0, 0.0]), oods[k], skin_score=s)
        assert (reason, is_skin, answerable, echoed) == (py["reason"], py["is_skin"], py["answerable"],
                                                         py["skin_score"]), (c, k, s)
        reasons.add(reason)
    assert {"not_skin_like", "unsure_skin"} <= reasons  # the cases reach both outcomes of the check
    assert len(got) == len(crops) * len(oods) * len(scores)
