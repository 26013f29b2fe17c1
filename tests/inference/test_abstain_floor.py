"""Never "ok" at chance: the abstain threshold has a floor (chance plus a margin) where it is fitted
(engine.calibration), where it is applied (inference.result_from_logits) and in the page (verdict.js, whose parity
with Python tests/parity/test_verdict.py checks)."""

from __future__ import annotations

import numpy as np
import pytest

from hypoderm.inference import result_from_logits
from hypoderm.model_quality import CHANCE_MARGIN, abstain_floor, effective_abstain_threshold

NAMES = ["normal_skin", "other_lesion", "vitiligo"]
# the gate off and the skin floor at 0: only the abstain rule decides between ok and uncertain
NO_OOD = {"skin_fraction_min": 0.0, "max_logit_min": -1e9, "gate": None}
CROP = np.full((8, 8, 3), (200, 150, 120), dtype=np.uint8)


def _metadata(threshold: float, names: list[str] = NAMES, temperature: float = 1.0) -> dict:
    return {"class_names": names, "temperature": temperature, "abstain_threshold": threshold, "ood": NO_OOD}


def test_floor_is_chance_plus_a_margin() -> None:
    assert abstain_floor(3) == pytest.approx(0.5)
    assert abstain_floor(2) == pytest.approx(0.625)
    for k in (2, 3, 5, 10):
        assert 1.0 / k < abstain_floor(k) < 1.0
        assert abstain_floor(k) == pytest.approx(1 / k + CHANCE_MARGIN * (1 - 1 / k))
    assert effective_abstain_threshold(0.334, 3) == pytest.approx(0.5)
    assert effective_abstain_threshold(0.8, 3) == 0.8  # a fitted threshold above the floor is kept


def test_bundled_model_threshold_is_above_the_floor() -> None:
    """The floor changes none of the bundled model's answers (MODEL_CARD's numbers stay true)."""
    from hypoderm.inference import bundled_model, load_metadata

    md = load_metadata(bundled_model())
    assert md["abstain_threshold"] >= abstain_floor(len(md["class_names"]))


@pytest.mark.parametrize("logits", [[0.0, 0.0, 0.0], [0.1, 0.0, -0.05], [0.6, 0.0, 0.0]])
def test_a_model_at_chance_with_a_threshold_at_chance_answers_uncertain(logits: list[float]) -> None:
    """The collapsed model of issue 29 (threshold 0.334 fitted for 3 classes) answered "ok" for every photo."""
    r = result_from_logits(np.array(logits), CROP, _metadata(0.334))
    assert r["status"] == "uncertain" and r["reason"] == "low_confidence" and r["answer"] is None
    assert max(r["probabilities"].values()) < 0.5


def test_a_confident_answer_still_passes_a_low_threshold() -> None:
    r = result_from_logits(np.array([3.0, 0.0, 0.0]), CROP, _metadata(0.334))
    assert r["status"] == "ok" and r["answer"] == "normal_skin"


def test_fitted_threshold_never_below_the_floor() -> None:
    from hypoderm.engine.calibration import choose_abstain_threshold

    rng = np.random.default_rng(0)
    # a collapsed model: temperature-scaled probabilities near the class frequencies, top class always 0
    probs = np.array([[0.34, 0.33, 0.33]] * 30) + rng.uniform(0, 0.004, size=(30, 3))
    probs /= probs.sum(1, keepdims=True)
    y = np.arange(30) % 3
    r = choose_abstain_threshold(probs, y, target=0.95)
    assert r["threshold"] == pytest.approx(0.5) and r["coverage"] == 0.0
    # a model whose confident answers are right keeps its own (higher) threshold
    good = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.45, 0.3, 0.25]])
    r = choose_abstain_threshold(good, np.array([0, 1, 2, 1]), target=0.95)
    assert r["threshold"] == pytest.approx(0.9) and r["reached"]
