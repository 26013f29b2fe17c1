"""Metrics, calibration and plots of the engine: checked against scikit-learn and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

from hypoderm.engine.calibration import choose_abstain_threshold, fit_temperature, max_logit_stats
from hypoderm.inference import softmax
from hypoderm.metrics import bootstrap_ci, classification_metrics, expected_calibration_error, group_metrics


def _fixed_predictions(k: int = 3, n: int = 90, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]  # informative but imperfect
    return y, softmax(logits)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_metrics_equal_sklearn(k: int) -> None:
    y, probs = _fixed_predictions(k)
    names = [f"c{i}" for i in range(k)]
    m = classification_metrics(y, probs, names, n_bootstrap=0)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    p, r, f, s = precision_recall_fscore_support(y, pred)
    for i, c in enumerate(names):
        assert m["per_class"][c]["precision"] == pytest.approx(p[i])
        assert m["per_class"][c]["recall"] == pytest.approx(r[i])
        assert m["per_class"][c]["f1"] == pytest.approx(f[i])
        assert m["per_class"][c]["support"] == s[i]
    expected_auc = roc_auc_score(y, probs[:, 1]) if k == 2 else roc_auc_score(y, probs, multi_class="ovr")
    assert m["roc_auc_ovr"] == pytest.approx(expected_auc)


def test_absent_class_counts_in_macro_f1_and_auc_skips_it() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    m = classification_metrics(y, probs, ["a", "b", "c"], n_bootstrap=0)
    assert m["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro", labels=[0, 1, 2],
                                                   zero_division=0))
    assert np.isnan(m["per_class"]["c"]["roc_auc"])
    assert m["per_class"]["c"]["support"] == 0


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], np.ones((3, 2)) / 2, ["a", "b"])


def test_ece_by_hand() -> None:
    # two bins used: conf 0.9 (2 samples, 1 correct) and conf 0.6 (2 samples, 2 correct)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(expected)


def test_bootstrap_interval_brackets_the_estimate() -> None:
    y, probs = _fixed_predictions(2, n=200)
    pred = probs.argmax(1)
    ci = bootstrap_ci(y, pred, n_resamples=300, seed=0)
    acc = accuracy_score(y, pred)
    assert ci["accuracy"][0] < acc < ci["accuracy"][1]
    assert ci["macro_f1"][0] < f1_score(y, pred, average="macro") < ci["macro_f1"][1]
    assert bootstrap_ci(y, pred, n_resamples=300, seed=0) == ci  # seeded: reproducible


def test_temperature_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 3)) * 2
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 3.0, y)  # overconfident by a factor 3
    assert t == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(softmax(true_logits * 3.0), y)
    after = expected_calibration_error(softmax(true_logits * 3.0, t), y)
    assert after < before


def test_abstain_threshold_reaches_target() -> None:
    # confidences descending; the two least confident are wrong
    probs = np.array([[0.99, 0.01], [0.95, 0.05], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    y = np.array([0, 0, 0, 0, 1, 1])
    r = choose_abstain_threshold(probs, y, target=0.95)
    assert r["threshold"] == pytest.approx(0.8) and r["reached"]
    assert r["coverage"] == pytest.approx(4 / 6) and r["accuracy_kept"] == 1.0


def test_abstain_threshold_fallback_when_unreachable() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    y = np.array([1, 0, 0])  # the most confident one is wrong
    r = choose_abstain_threshold(probs, y, target=0.95)
    assert not r["reached"]
    assert r["threshold"] == pytest.approx(0.7)  # best kept accuracy 2/3, largest set
    assert r["threshold"] >= 0.5


def test_group_metrics_and_max_logit_stats() -> None:
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    g = group_metrics(y, probs, ["I", "I", "V", None], 2)
    assert g["I"] == {"n": 2, "accuracy": 1.0, "macro_f1": 1.0}
    assert g["V"]["accuracy"] == 0.0 and g["unknown"]["n"] == 1
    s = max_logit_stats(np.array([[1.0, 2.0], [3.0, 0.0], [0.5, 0.2]]))
    assert s["val_max_logit_quantiles"]["q00"] == 0.5 and s["n"] == 3
