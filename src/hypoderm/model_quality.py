"""Is a trained model broken? Checks on its validation results, shared by `train` (warns), `export`
(refuses without `--force`, and marks the metadata) and `predict` / `serve` (show the mark). Torch-free.

A model that predicts one class for every validation photo, scores a macro-F1 no better than
guessing, or needed a temperature at the bound of the fit is not a decision aid: it answers
"Most likely: Normal skin (50%)" for everything.
"""

from __future__ import annotations

from typing import Any

# hypoderm.engine.calibration.fit_temperature clamps the fitted temperature to this range.
TEMPERATURE_BOUNDS = (0.05, 20.0)

# The abstain threshold never falls below chance plus this fraction of the way from chance (1/K) to certainty.
# Why 0.25: for the bundled 3-class model the floor is 0.5, an answer only when the top class is more likely
# than the other two together; its fitted threshold (0.516) is above it, so the floor changes none of its
# answers, while a collapsed model (temperature fitted to class frequencies, threshold fitted at 1/K = 0.334)
# answers "uncertain" everywhere. Mirrored in static/js/verdict.js (CHANCE_MARGIN, abstainFloor).
CHANCE_MARGIN = 0.25


def chance_macro_f1(num_classes: int) -> float:
    """Expected macro-F1 of guessing each class at its frequency: 1 / K (per-class F1 = its frequency)."""
    return 1.0 / max(1, num_classes)


def abstain_floor(num_classes: int) -> float:
    """The lowest abstain threshold a K-class model may use: 1/K + CHANCE_MARGIN * (1 - 1/K)
    (0.625 for 2 classes, 0.5 for 3, 0.325 for 10), so that no answer is given at chance."""
    chance = 1.0 / max(1, num_classes)
    return chance + CHANCE_MARGIN * (1.0 - chance)


def effective_abstain_threshold(threshold: float, num_classes: int) -> float:
    """The threshold the verdict rules apply: the fitted (or stored) one, raised to `abstain_floor` when below."""
    return max(float(threshold), abstain_floor(num_classes))


def model_problems(metrics: dict[str, Any], temperature: float | None, num_classes: int) -> list[dict[str, str]]:
    """[{"code", "message"}] for each sign of a broken model in a checkpoint's validation metrics."""
    problems: list[dict[str, str]] = []
    counts = metrics.get("val/predicted_counts")
    if counts is not None and num_classes >= 2 and sum(1 for c in counts if c) <= 1:
        problems.append({"code": "collapsed", "message": "validation predictions collapse to one class: predicted "
                         f"counts {list(counts)} over {_predictions(counts, metrics.get('val/n_photos'))}"})
    f1 = metrics.get("val/macro_f1")
    if f1 is not None and num_classes >= 2 and float(f1) <= chance_macro_f1(num_classes) + 1e-9:
        problems.append({"code": "chance_f1",
                         "message": f"validation macro-F1 {float(f1):.3f} is at chance "
                                    f"(<= {chance_macro_f1(num_classes):.3f} for {num_classes} classes)"})
    if temperature is not None:
        lo, hi = TEMPERATURE_BOUNDS
        if float(temperature) <= lo * 1.001 or float(temperature) >= hi * 0.999:
            problems.append({"code": "temperature_bound",
                             "message": f"the fitted temperature {float(temperature):.3g} hit its bound "
                                        f"[{lo:g}, {hi:g}]: the probabilities are not calibrated"})
    return problems


def _predictions(counts: list[int], photos: int | None) -> str:
    """'44 predictions (11 photos + their close-up views)', or '11 photos' when each photo was predicted once:
    calibration also predicts the validation photos' close-ups, so the counts can exceed the photos."""
    n = int(sum(counts))
    if photos is None:
        return f"{n} predictions"
    if n > int(photos):
        return f"{n} predictions ({int(photos)} photos + their close-up views)"
    return f"{n} photos"


def checkpoint_problems(ckpt: dict[str, Any]) -> list[dict[str, str]]:
    """model_problems of a checkpoint dict (hypoderm.checkpoint)."""
    metrics = ckpt.get("metrics") or {}
    temperature = metrics.get("val/temperature", None)
    return model_problems(metrics, temperature, len(ckpt.get("class_names") or []))


def metadata_problems(metadata: dict[str, Any]) -> list[dict[str, str]]:
    """The problems recorded in an exported model's metadata (`quality.problems`); [] when none."""
    return list((metadata.get("quality") or {}).get("problems") or [])
