"""Post-training calibration on the validation fold: temperature, abstain threshold, max-logit stats."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hypoderm.model_quality import effective_abstain_threshold

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5)


def fit_temperature(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                    max_iter: int = 100) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) (Guo et al. 2017), by LBFGS on log T."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need (N, K) logits and N labels, got {tuple(z.shape)} and {tuple(y.shape)}")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T so T stays > 0
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    # a separable validation set drives T towards 0; clamp to a range that stays meaningful
    return float(min(max(t, 0.05), 20.0)) if np.isfinite(t) else 1.0


def choose_abstain_threshold(probs: np.ndarray, labels: np.ndarray, target: float = 0.95) -> dict[str, Any]:
    """Selective prediction: the smallest top-probability threshold whose kept samples reach `target` accuracy.

    Samples with top probability >= threshold are answered, the rest are "uncertain". Fallback when no
    threshold reaches the target (small or hard validation set): the threshold with the best kept
    accuracy (lowest such threshold on ties), flagged `reached: False`. The threshold is never below
    `hypoderm.model_quality.abstain_floor(K)` (chance, 1/K, plus a margin), so a model at chance abstains.
    """
    probs, labels = np.asarray(probs), np.asarray(labels)
    k = probs.shape[1]
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(-conf, kind="stable")
    conf_sorted, correct_sorted = conf[order], correct[order]
    kept_acc = np.cumsum(correct_sorted) / np.arange(1, len(conf) + 1)
    # only positions where the next sample has lower confidence are valid cut points (ties stay together)
    valid = np.r_[conf_sorted[1:] < conf_sorted[:-1], True]
    ok = valid & (kept_acc >= target)
    if ok.any():
        i = int(np.nonzero(ok)[0].max())  # largest kept set = smallest threshold
        reached = True
    else:
        cand = np.nonzero(valid)[0]
        best = kept_acc[cand].max()
        i = int(cand[kept_acc[cand] >= best - 1e-12].max())  # best accuracy, largest kept set on ties
        reached = False
    threshold = effective_abstain_threshold(float(conf_sorted[i]), k)
    kept = conf >= threshold
    return {"threshold": threshold, "target": float(target), "reached": reached,
            "coverage": float(kept.mean()),
            "accuracy_kept": float(correct[kept].mean()) if kept.any() else float("nan")}


def max_logit_stats(logits: np.ndarray) -> dict[str, Any]:
    """Quantiles of the validation max-logit (raw logits), for an out-of-distribution floor."""
    m = np.asarray(logits).max(axis=1)
    q = {f"q{int(round(p * 100)):02d}": float(np.quantile(m, p)) for p in QUANTILES}
    return {"val_max_logit_quantiles": q, "max_logit_min": q["q01"], "n": int(len(m))}
