"""hypoderm.model_quality: the collapse warning counts what was predicted (photos and their close-ups)."""

from __future__ import annotations

from hypoderm.model_quality import model_problems


def _collapse(metrics: dict) -> str:
    (problem,) = [p for p in model_problems(metrics, None, 3) if p["code"] == "collapsed"]
    return problem["message"]


def test_collapse_warning_says_close_ups_are_counted() -> None:
    """Issue 29: '44 predictions' for 11 validation photos, without saying that close-ups were counted."""
    msg = _collapse({"val/predicted_counts": [44, 0, 0], "val/n_photos": 11})
    assert msg.endswith("predicted counts [44, 0, 0] over 44 predictions (11 photos + their close-up views)")
    assert _collapse({"val/predicted_counts": [0, 11, 0], "val/n_photos": 11}).endswith("over 11 photos")
    # checkpoints from before val/n_photos: the number, without a claim about what it counts
    assert _collapse({"val/predicted_counts": [0, 0, 44]}).endswith("over 44 predictions")
