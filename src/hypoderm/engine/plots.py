"""PNG plots: an evaluation's confusion matrix, reliability diagram and training curves, and the numbered point
labels of the comparison study's scatter plots (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrix(cm: Sequence[Sequence[int]], class_names: Sequence[str], path: Path) -> Path:
    counts = np.asarray(cm)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(2.2 + 0.8 * k, 1.8 + 0.8 * k))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                    color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_title("confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_reliability(bins_before: dict, bins_after: dict, ece_before: float, ece_after: float, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    curves = ((bins_before, f"T = 1 (ECE {ece_before:.3f})"), (bins_after, f"calibrated (ECE {ece_after:.3f})"))
    for bins, label in curves:
        conf, acc = np.asarray(bins["confidence"]), np.asarray(bins["accuracy"])
        m = np.isfinite(conf)
        ax.plot(conf[m], acc[m], "o-", label=label)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("reliability diagram")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_training_curves(metrics_jsonl: Path, path: Path) -> Path | None:
    """Loss and validation macro-F1 / accuracy per epoch; None when there is no training log."""
    rows = read_jsonl(metrics_jsonl)
    if not rows:
        return None
    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in ("train/loss", "val/loss"):
        a1.plot(ep, [r.get(key, np.nan) for r in rows], "o-", label=key)
    from matplotlib.ticker import MaxNLocator

    for ax in (a1, a2):  # epochs are whole numbers: no "2.5" ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    a1.set_xlabel("epoch")
    a1.set_title("loss")
    a1.legend()
    for key in ("val/macro_f1", "val/accuracy"):
        a2.plot(ep, [r.get(key, np.nan) for r in rows], "o-", label=key)
    a2.set_xlabel("epoch")
    a2.set_ylim(0, 1)
    a2.set_title("validation")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def place_numbers(fig: Any, ax: Any, points: list[tuple[float, float]]) -> None:
    """Number each point (1..n) without two labels overlapping: each label tries offsets around its
    point, nearest first, and takes the first that overlaps no label already placed (a thin line
    joins a label pushed away from its point)."""
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    offsets = [(5, 3), (5, -11), (-12, 3), (-12, -11)]
    for ring in range(1, 12):  # then rings further out, eight directions each
        offsets += [(round(5 + 13 * ring * math.cos(a)), round(-4 + 11 * ring * math.sin(a)))
                    for a in (k * math.pi / 4 for k in range(8))]
    for i, (x, y) in enumerate(points, 1):
        for n, (dx, dy) in enumerate(offsets):
            far = abs(dx) > 12 or abs(dy) > 12
            text = ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                               arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if far else None)
            box = text.get_window_extent(renderer).expanded(1.1, 1.1)
            if n == len(offsets) - 1 or not any(box.overlaps(b) for b in placed):
                placed.append(box)
                break
            text.remove()
