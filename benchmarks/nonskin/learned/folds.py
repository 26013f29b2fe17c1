"""The skin check's held-out folds, shared by fit_skin_check.py, compare_probes.py and zero_shot.py.

Fold f (of 3) leaves out every third skin origin AND every third non-skin origin (each side's origins sorted), so
every origin on both sides is scored by a check that never saw it.
"""

from __future__ import annotations

import numpy as np

K = 3


def origin_folds(side: np.ndarray, origin: np.ndarray) -> list[tuple[list[str], list[str]]]:
    """[(skin origins left out, non-skin origins left out)] for each fold."""
    skin = sorted(set(origin[side == "skin"]))
    non = sorted(set(origin[side == "nonskin"]))
    return [(skin[f::K], non[f::K]) for f in range(K)]


def left_out(side: np.ndarray, origin: np.ndarray, fold: tuple[list[str], list[str]]) -> np.ndarray:
    """The crops a fold leaves out: its skin origins' skin crops and its non-skin origins' non-skin crops."""
    out_skin, out_non = fold
    return ((side == "skin") & np.isin(origin, out_skin)) | ((side == "nonskin") & np.isin(origin, out_non))
