"""Fit the not-skin gate of hypoderm.inference.ood on photos of several origins and choose its thresholds on
origins it never saw (procedure and recorded output: README.md).

Positives (skin photos), from the multisource manifest (`--data`, one `origin` column): every photo as the
model sees it (its 128 px crop) and close-ups of it (side 20-60% of the shorter side, random positions,
`--closeups` per photo) that show mostly skin (>= 50% skin pixels by Kovac's RGB rule, not the gate's rule),
plus one perturbed copy per photo (sensor noise, low resolution, JPEG or a skin-tone shift), so that a
source's camera and light are not what the gate learns.
Negatives: synthetic pictures of hypoderm.data.nonskin (`FIT` ranges) and the real sample photos that ship
inside installed Python packages (`nonskin.sample_photos`: scikit-image, scikit-learn, Matplotlib), each
whole and as close-ups.

Model: standardised statistics (some square-rooted), logistic regression on them and their pairwise
products (L2 strength `--C`, balanced classes). Two thresholds, both quantiles of the fitting positives'
scores: `threshold` (below: refused, "not_skin_like") and `answer_threshold` (below: the answer is
withheld, status uncertain). They are chosen on held-out origins: for each origin, the gate is fitted
without it and its photos are scored; `threshold` is the largest quantile in QUANTILES that keeps at
least KEEP_TARGET of every held-out origin's photos and close-ups, `answer_threshold` the largest that
lets at least ANSWER_TARGET of them be answered. Reported beside them: the same with a linear model
(no pairwise terms), the real sample photos held out by photo (3 folds), and the synthetic TEST suite
(other seeds, wider ranges) that tests/inference/test_nonskin.py asserts on.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nonskin/fit_gate.py   # ~10 min on 2 CPUs
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hypoderm.data import nonskin
from hypoderm.imaging.io import load_rgb
from hypoderm.inference.ood import (
    FEATURE_NAMES,
    GATE_FORMAT,
    V1_SKIN_RULE,
    gate_features,
    gate_score,
    validate_gate,
)
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, resized_uint8

ROOT = Path(__file__).resolve().parents[2]
FIT_SEED, AUG_SEED, NEG_SEED, REAL_SEED = 2024, 99, 100_000, 5
SIZE, BLOCK = 128, 16  # the bundled model's input: the gate reads the model's own crop
SQRT_FEATURES = ["grad_rms", "skin_chroma_sd", "skin_luma_sd", "luma_sd", "chroma_mean"]
MOSTLY_SKIN = 0.5  # Kovac fraction of a close-up that counts as "framed on skin"
QUANTILES = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05)
KEEP_TARGET = 0.98  # held-out keep rate the refusal threshold must reach on every origin (the goal is 0.97)
ANSWER_TARGET = 0.90  # held-out share of skin photos the answer threshold must leave answerable, every origin
LUMA_MIN = 24.0  # mean luma of a nearly black crop; the darkest real crop of the development set is about 49
SKIN_FLOORS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
SKIN_FLOOR_MAX_LOSS = 0.005  # the largest floor that refuses at most this share of the real photos


def model_crop(img: Image.Image) -> np.ndarray:
    spec = PreprocessSpec.for_size(SIZE)
    return center_crop_array(resized_uint8(img, spec), SIZE)


def stats_row(crop: np.ndarray) -> list[float]:
    f = gate_features(np.ascontiguousarray(crop), {"block": BLOCK, "skin_rule": V1_SKIN_RULE})
    return [f[n] for n in (*FEATURE_NAMES, "luma_mean")]


def perturb(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of: sensor noise (std 1-5), low resolution (25-60%, upscaled back), JPEG (quality 30-80), or a
    CIELAB skin-tone shift (hypoderm.engine.augment.ToneShift)."""
    kind = int(rng.integers(4))
    if kind == 0:
        return np.clip(np.round(crop + rng.normal(0, rng.uniform(1, 5), crop.shape)), 0, 255).astype(np.uint8)
    if kind == 1:
        side = max(8, int(SIZE * rng.uniform(0.25, 0.6)))
        small = Image.fromarray(crop).resize((side, side), Image.Resampling.BILINEAR)
        return np.asarray(small.resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    if kind == 2:
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "JPEG", quality=int(rng.integers(30, 81)))
        return np.asarray(Image.open(buf).convert("RGB"))
    import torch

    from hypoderm.engine.augment import ToneShift

    torch.manual_seed(int(rng.integers(2**31)))
    return ToneShift(p=1.0)(torch.from_numpy(crop.copy()).permute(2, 0, 1)).permute(1, 2, 0).numpy()


def positive_rows(manifest: Path, per_photo: int) -> dict[str, np.ndarray]:
    """Statistics of every photo's crop, its mostly-skin close-ups and one perturbed copy, with origins."""
    with open(manifest, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rng, aug_rng = np.random.default_rng(FIT_SEED), np.random.default_rng(AUG_SEED)
    x, origin, kind, photo = [], [], [], []
    for pid, r in enumerate(rows):
        img = load_rgb(manifest.parent / r["path"])
        crops = [("whole", model_crop(img))]
        crops += [("close", c) for c in (model_crop(cl) for cl in nonskin.closeups(img, rng, per_photo))
                  if nonskin.kovac_fraction(c) >= MOSTLY_SKIN]
        for k, c in crops:
            x.append(stats_row(c)), origin.append(r["origin"]), kind.append(k), photo.append(pid)
        _, pick = crops[int(aug_rng.integers(len(crops)))]
        x.append(stats_row(perturb(pick, aug_rng))), origin.append(r["origin"]), kind.append("perturbed")
        photo.append(pid)
    return {"x": np.array(x), "origin": np.array(origin), "kind": np.array(kind), "photo": np.array(photo)}


def negative_rows(per_family: int) -> dict[str, np.ndarray]:
    x, source, group = [], [], []
    for fam, img in nonskin.suite(per_family, NEG_SEED, nonskin.FIT):
        x.append(stats_row(model_crop(img))), source.append(f"synthetic:{fam}"), group.append(-1)
    rng = np.random.default_rng(REAL_SEED)
    for g, (name, img) in enumerate(nonskin.sample_photos()):
        for c in [img, *nonskin.closeups(img, rng, 12)]:
            x.append(stats_row(model_crop(c))), source.append(name), group.append(g)
    return {"x": np.array(x), "source": np.array(source), "group": np.array(group)}


def test_rows(per_family: int) -> tuple[np.ndarray, np.ndarray]:
    rows, fams = [], []
    for fam, img in nonskin.suite(per_family, 0, nonskin.TEST):
        rows.append(stats_row(model_crop(img)))
        fams.append(fam)
    return np.array(rows), np.array(fams)


NF = len(FEATURE_NAMES)


def transform(x: np.ndarray) -> np.ndarray:
    x = x[:, :NF].copy()
    for name in SQRT_FEATURES:
        i = FEATURE_NAMES.index(name)
        x[:, i] = np.sqrt(np.maximum(x[:, i], 0.0))
    return x


def expand(z: np.ndarray, quadratic: bool) -> np.ndarray:
    """Standardised features -> [z_i] + [z_i z_j for i <= j, row by row] (the gate's term order)."""
    if not quadratic:
        return z
    iu = np.triu_indices(z.shape[1])
    return np.hstack([z, (z[:, :, None] * z[:, None, :])[:, iu[0], iu[1]]])


def fit(pos: np.ndarray, neg: np.ndarray, c: float, quadratic: bool = True) -> dict[str, Any]:
    """Gate parameters (thresholds still 0) from positive and negative statistic rows."""
    from sklearn.linear_model import LogisticRegression

    x = transform(np.vstack([pos, neg]))
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    clf = LogisticRegression(C=c, max_iter=20_000, class_weight="balanced")
    clf.fit(expand((x - mean) / scale, quadratic), y)
    coef = clf.coef_[0]
    quad = coef[NF:].tolist() if quadratic else [0.0] * (NF * (NF + 1) // 2)
    return {"format": GATE_FORMAT, "size": SIZE, "block": BLOCK, "skin_rule": V1_SKIN_RULE,
            "features": list(FEATURE_NAMES), "sqrt_features": list(SQRT_FEATURES), "mean": mean.tolist(),
            "scale": scale.tolist(), "linear": coef[:NF].tolist(), "quadratic": quad,
            "bias": float(clf.intercept_[0]), "threshold": 0.0, "answer_threshold": 0.0, "luma_min": LUMA_MIN}


def scores(rows: np.ndarray, gate: dict[str, Any]) -> np.ndarray:
    return np.array([gate_score(dict(zip(FEATURE_NAMES, r[:NF], strict=True)), gate) for r in rows])


def held_out_origins(pos: dict[str, np.ndarray], neg: np.ndarray, c: float, quadratic: bool,
                     floor: float) -> dict[str, Any]:
    """Per origin: the gate fitted without it; keep rate (whole photos, close-ups) at every QUANTILES (with the
    skin floor and the dark check, which refuse too)."""
    real = pos["kind"] != "perturbed"
    passes_rules = (pos["x"][:, FEATURE_NAMES.index("skin_fraction")] >= floor) & (pos["x"][:, NF] >= LUMA_MIN)
    out: dict[str, Any] = {}
    for o in sorted(set(pos["origin"].tolist())):
        train = pos["origin"] != o
        gate = fit(pos["x"][train], neg, c, quadratic)
        s_train = scores(pos["x"][train & real], gate)
        rates: dict[str, dict[str, float]] = {}
        for kind in ("whole", "close"):
            rows = (pos["origin"] == o) & (pos["kind"] == kind)
            s_test, rules = scores(pos["x"][rows], gate), passes_rules[rows]
            rates[kind] = {str(q): float(np.mean((s_test >= np.quantile(s_train, q)) & rules)) for q in QUANTILES}
        out[o] = {"n_whole": int(np.sum((pos["origin"] == o) & (pos["kind"] == "whole"))),
                  "n_close": int(np.sum((pos["origin"] == o) & (pos["kind"] == "close"))), "kept": rates}
        print(f"  held out {o}: " + " ".join(f"q={q} {rates['whole'][str(q)]:.3f}/{rates['close'][str(q)]:.3f}"
                                             for q in QUANTILES[:6]), flush=True)
    return out


def choose_quantile(held: dict[str, Any], target: float) -> float | None:
    """The largest quantile whose held-out keep rate reaches `target` for every origin, whole and close-ups."""
    ok = [q for q in QUANTILES if all(min(v["kept"]["whole"][str(q)], v["kept"]["close"][str(q)]) >= target
                                      for v in held.values())]
    return max(ok) if ok else None


def final_gate(pos: dict[str, np.ndarray], neg: np.ndarray, c: float, quadratic: bool, q_refuse: float,
               q_answer: float) -> dict[str, Any]:
    """The gate fitted on every origin, its thresholds at the chosen quantiles of the real positives' scores."""
    gate = fit(pos["x"], neg, c, quadratic)
    s_pos = scores(pos["x"][pos["kind"] != "perturbed"], gate)
    gate["threshold"] = float(np.quantile(s_pos, q_refuse))
    gate["answer_threshold"] = float(np.quantile(s_pos, q_answer))
    return gate


def verdicts(rows: np.ndarray, gate: dict[str, Any], floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(refused, withheld) of statistic rows under `gate` with the skin floor and the dark check."""
    s = scores(rows, gate)
    skin = rows[:, FEATURE_NAMES.index("skin_fraction")]
    refused = (s < gate["threshold"]) | (skin < floor) | (rows[:, NF] < LUMA_MIN)
    return refused, ~refused & (s < gate["answer_threshold"])


def real_negatives_held_out(pos: np.ndarray, neg: dict[str, np.ndarray], c: float, q_refuse: float,
                            q_answer: float) -> dict[str, float]:
    """The sample photos in 3 folds by photo: fitted without a fold, share of its crops refused / withheld."""
    groups = neg["group"]
    photos = sorted(set(groups[groups >= 0].tolist()))
    refused, withheld = [], []
    for f in range(3):
        test = np.isin(groups, photos[f::3])
        gate = fit(pos, neg["x"][~test], c)
        s_pos = scores(pos, gate)
        s = scores(neg["x"][test], gate)
        refused += (s < np.quantile(s_pos, q_refuse)).tolist()
        withheld += ((s >= np.quantile(s_pos, q_refuse)) & (s < np.quantile(s_pos, q_answer))).tolist()
    return {"refused": float(np.mean(refused)), "withheld": float(np.mean(withheld)), "n": len(refused)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "multisource" / "index.csv")
    ap.add_argument("--closeups", type=int, default=4, help="close-ups drawn per photo")
    ap.add_argument("--per-family", type=int, default=200, help="synthetic fitting pictures per family")
    ap.add_argument("--test-per-family", type=int, default=65, help="held-out TEST pictures per family")
    ap.add_argument("--C", type=float, default=0.03, help="inverse L2 strength of the logistic regression")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "hypoderm" / "assets" / "nonskin_gate.json")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("results.json"))
    ap.add_argument("--model-json", type=Path, default=ROOT / "src" / "hypoderm" / "assets" / "model.json",
                    help="a model's sidecar metadata whose `ood` gate and skin floor are replaced ('' for none)")
    args = ap.parse_args()
    t0 = time.time()
    pos = positive_rows(args.data, args.closeups)
    neg = negative_rows(args.per_family)
    test, tfam = test_rows(args.test_per_family)
    real = pos["kind"] != "perturbed"
    print(f"rows: {int(np.sum(pos['kind'] == 'whole'))} photos, {int(np.sum(pos['kind'] == 'close'))} close-ups, "
          f"{int(np.sum(pos['kind'] == 'perturbed'))} perturbed copies; {len(neg['x'])} negatives "
          f"({int(np.sum(neg['group'] >= 0))} from {len(set(neg['group'][neg['group'] >= 0].tolist()))} sample "
          f"photos); {len(test)} TEST pictures ({time.time() - t0:.0f} s)", flush=True)

    sf = pos["x"][real, FEATURE_NAMES.index("skin_fraction")]
    floor = max(f for f in SKIN_FLOORS if np.mean(sf < f) <= SKIN_FLOOR_MAX_LOSS)
    print("held-out origins, quadratic model:", flush=True)
    held = held_out_origins(pos, neg["x"], args.C, True, floor)
    print("held-out origins, linear model:", flush=True)
    held_linear = held_out_origins(pos, neg["x"], args.C, False, floor)
    q_refuse = choose_quantile(held, KEEP_TARGET)
    q_answer = choose_quantile(held, ANSWER_TARGET)
    if q_refuse is None or q_answer is None:
        print("no quantile reaches the keep targets on every held-out origin", file=sys.stderr)
        return 1

    gate = final_gate(pos, neg["x"], args.C, True, q_refuse, q_answer)
    q_lin = (choose_quantile(held_linear, KEEP_TARGET), choose_quantile(held_linear, ANSWER_TARGET))
    linear = final_gate(pos, neg["x"], args.C, False, *q_lin) if None not in q_lin else None
    gate["skin_fraction_min"] = floor
    gate["fitted_on"] = {"photos": int(np.sum(pos["kind"] == "whole")), "closeups": int(np.sum(pos["kind"] == "close")),
                         "perturbed": int(np.sum(pos["kind"] == "perturbed")), "negatives": len(neg["x"]),
                         "origins": sorted(set(pos["origin"].tolist())), "C": args.C,
                         "refuse_quantile": q_refuse, "answer_quantile": q_answer,
                         "script": "benchmarks/nonskin/fit_gate.py"}
    validate_gate(gate)
    args.out.write_text(json.dumps(gate, indent=1) + "\n", encoding="utf-8")
    if args.model_json.name:  # Path("") has no name
        md = json.loads(args.model_json.read_text(encoding="utf-8"))
        md["ood"] = {**(md.get("ood") or {}), "skin_fraction_min": floor, "gate": gate}
        args.model_json.write_text(json.dumps(md, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    refused, withheld = verdicts(test, gate, floor)
    s_whole = scores(pos["x"][pos["kind"] == "whole"], gate)
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} logical CPUs, "
                   f"python {platform.python_version()}, numpy {np.__version__}".strip(),
        "command": " ".join(["PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nonskin/fit_gate.py",
                             *sys.argv[1:]]),
        "C": args.C, "refuse_quantile": q_refuse, "answer_quantile": q_answer, "skin_fraction_min": floor,
        "skin_floor_loss": float(np.mean(sf < floor)), "luma_min": LUMA_MIN,
        "held_out_origins": held, "held_out_origins_linear": held_linear,
        "real_negatives_held_out": real_negatives_held_out(pos["x"], neg, args.C, q_refuse, q_answer),
        "test_suite": {"n": len(test), "refused": float(refused.mean()), "withheld": float(withheld.mean()),
                       "refused_or_withheld": float((refused | withheld).mean()),
                       "per_family": {f: {"refused": float(refused[tfam == f].mean()),
                                          "refused_or_withheld": float((refused | withheld)[tfam == f].mean())}
                                      for f in nonskin.FAMILIES}},
        "linear_alternative": None if linear is None else {
            "refuse_quantile": q_lin[0], "answer_quantile": q_lin[1],
            "test_suite_refused": float(verdicts(test, linear, floor)[0].mean()),
            "test_suite_refused_or_withheld": float(np.logical_or(*verdicts(test, linear, floor)).mean())},
        "in_sample": {"photos_kept": float(np.mean(s_whole >= gate["threshold"])),
                      "photos_answerable": float(np.mean(s_whole >= gate["answer_threshold"]))},
        "seconds": round(time.time() - t0, 1),
    }
    args.results.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if not k.startswith("held_out_origins")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
