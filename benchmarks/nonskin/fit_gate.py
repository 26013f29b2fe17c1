"""Fit the not-skin gate of hypoderm.inference.ood and measure it (procedure and recorded output: README.md).

Positives (skin photos): every real photo of --data as the model sees it (resize 256, centre crop
224) and close-ups of it (side 20-60% of the shorter side, random positions; `--closeups` per photo,
seed FIT_SEED) that show mostly skin (>= 50% skin pixels by Kovac's RGB rule, not the gate's rule).
Negatives: synthetic non-skin pictures of tests/nonskin.py, `FIT` ranges, seeds from NEG_SEED.

Model: standardised features (some square-rooted), logistic regression on the features and their
pairwise products (L2, balanced classes, scikit-learn), threshold = the `--reject-real` quantile
of the positives' scores (`--noise` adds a noisy copy of every positive crop: see README).
Reported: 5-fold out-of-fold rates (folds by photo), then the final gate
on held-out data: the `TEST` suite of tests/nonskin.py (other seeds and wider ranges, the suite
tests/test_nonskin.py asserts on) and fresh close-ups (seed EVAL_SEED).

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nonskin/fit_gate.py
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import nonskin  # noqa: E402  (tests/nonskin.py: the synthetic generator)
from hypoderm.data.io import load_rgb  # noqa: E402
from hypoderm.inference.ood import FEATURE_NAMES, GATE_FORMAT, gate_features, gate_score, validate_gate  # noqa: E402
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, resized_uint8  # noqa: E402

FIT_SEED, EVAL_SEED, NEG_SEED = 2024, 7, 100_000
NOISE = (0.5, 3.0)  # std range of the noisy copies: the FIT range of tests/nonskin.py's sensor noise
SQRT_FEATURES = ["grad_rms", "skin_chroma_sd", "skin_luma_sd", "luma_sd", "chroma_mean"]
MOSTLY_SKIN = 0.5  # Kovac fraction of a close-up that counts as "framed on skin"


def model_crop(img, spec: PreprocessSpec) -> np.ndarray:
    return center_crop_array(resized_uint8(img, spec), spec.size)


def feature_row(crop: np.ndarray) -> list[float]:
    f = gate_features(crop)
    return [f[n] for n in FEATURE_NAMES]


def real_rows(data: Path, per_photo: int, seed: int, spec: PreprocessSpec,
              noise: tuple[float, float] = NOISE) -> dict[str, np.ndarray]:
    """Features of the model crops and of the mostly-skin close-ups (+ all close-ups, for the record,
    and a copy of each model crop and mostly-skin close-up with pixel noise of std in `noise`)."""
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng, noise_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    whole, close, close_group, close_all, whole_noisy, close_noisy = [], [], [], [], [], []
    for g, path in enumerate(files):
        img = load_rgb(path)
        crop = model_crop(img, spec)
        whole.append(feature_row(crop))
        whole_noisy.append(feature_row(with_noise(crop, noise_rng, noise)))
        for c in nonskin.closeups(img, rng, per_photo):
            crop = model_crop(c, spec)
            row = feature_row(crop)
            close_all.append(row)
            if nonskin.kovac_fraction(crop) >= MOSTLY_SKIN:
                close.append(row)
                close_group.append(g)
                close_noisy.append(feature_row(with_noise(crop, noise_rng, noise)))
    return {"whole": np.array(whole), "close": np.array(close), "close_group": np.array(close_group),
            "close_all": np.array(close_all), "whole_noisy": np.array(whole_noisy),
            "close_noisy": np.array(close_noisy)}


def with_noise(crop: np.ndarray, rng: np.random.Generator, std: tuple[float, float]) -> np.ndarray:
    """The crop with Gaussian pixel noise (std drawn from `std`), as a camera photo at the crop's
    scale has. The photos here are mostly small thumbnails, upscaled and smooth; the synthetic
    pictures carry noise; so a gate fitted on them alone learns "noise-free means skin" (see README)."""
    noisy = crop.astype(np.float64) + rng.normal(0.0, rng.uniform(*std), crop.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def synthetic_rows(per_family: int, first_seed: int, ranges: nonskin.Ranges,
                   spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    rows, fams = [], []
    for fam, img in nonskin.suite(per_family, first_seed, ranges):
        rows.append(feature_row(model_crop(img, spec)))
        fams.append(fam)
    return np.array(rows), np.array(fams)


def transform(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    for name in SQRT_FEATURES:
        i = FEATURE_NAMES.index(name)
        x[:, i] = np.sqrt(np.maximum(x[:, i], 0.0))
    return x


def expand(z: np.ndarray) -> np.ndarray:
    """Standardised features -> [z_i] + [z_i z_j for i <= j, row by row] (the gate's term order)."""
    iu = np.triu_indices(z.shape[1])
    return np.hstack([z, (z[:, :, None] * z[:, None, :])[:, iu[0], iu[1]]])


def fit(pos: np.ndarray, neg: np.ndarray, c: float, reject_real: float, size: int = 224,
        extra_pos: np.ndarray | None = None) -> dict:
    """Fit on positives `pos` (+ augmented `extra_pos`) vs `neg`; the threshold is the `reject_real`
    quantile of the scores of `pos` (real, not augmented, crops)."""
    from sklearn.linear_model import LogisticRegression

    all_pos = pos if extra_pos is None else np.vstack([pos, extra_pos])
    x = transform(np.vstack([all_pos, neg]))
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    y = np.r_[np.ones(len(all_pos)), np.zeros(len(neg))]
    clf = LogisticRegression(C=c, max_iter=20_000, class_weight="balanced").fit(expand((x - mean) / scale), y)
    nf = len(FEATURE_NAMES)
    gate = {"format": GATE_FORMAT, "size": size, "features": list(FEATURE_NAMES), "sqrt_features": list(SQRT_FEATURES),
            "mean": mean.tolist(), "scale": scale.tolist(), "linear": clf.coef_[0][:nf].tolist(),
            "quadratic": clf.coef_[0][nf:].tolist(), "bias": float(clf.intercept_[0]), "threshold": 0.0}
    gate["threshold"] = float(np.quantile(scores(pos, gate), reject_real))
    return validate_gate(gate)


def scores(rows: np.ndarray, gate: dict) -> np.ndarray:
    return np.array([gate_score(dict(zip(FEATURE_NAMES, r, strict=True)), gate) for r in rows])


def accepted(rows: np.ndarray, gate: dict, skin_fraction_min: float = 0.05) -> np.ndarray:
    frac = rows[:, FEATURE_NAMES.index("skin_fraction")]
    return (scores(rows, gate) >= gate["threshold"]) & (frac >= skin_fraction_min)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hypopigmented")
    ap.add_argument("--closeups", type=int, default=16, help="close-ups drawn per photo for fitting")
    ap.add_argument("--per-family", type=int, default=200, help="synthetic fitting pictures per family")
    ap.add_argument("--test-per-family", type=int, default=65, help="held-out TEST pictures per family")
    ap.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    ap.add_argument("--noise", action="store_true",
                    help=f"also fit on a noisy copy (std {NOISE[0]}-{NOISE[1]}) of every positive crop (README: "
                         "more robust to noise, but it lets plain walls through)")
    ap.add_argument("--reject-real", type=float, default=0.004, help="share of fitting positives below the threshold")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "hypoderm" / "assets" / "nonskin_gate.json")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("results.json"))
    ap.add_argument("--model-json", type=Path, default=ROOT / "src" / "hypoderm" / "assets" / "model.json",
                    help="a model's sidecar metadata whose `ood.gate` is replaced by the new gate ('' for none)")
    args = ap.parse_args()
    spec = PreprocessSpec()
    t0 = time.time()
    real = real_rows(args.data, args.closeups, FIT_SEED, spec)
    neg, fam = synthetic_rows(args.per_family, NEG_SEED, nonskin.FIT, spec)
    pos = np.vstack([real["whole"], real["close"]])
    print(f"fitting rows: {len(real['whole'])} photos, {len(real['close'])} of {len(real['close_all'])} close-ups "
          f"mostly skin, {len(neg)} synthetic ({time.time() - t0:.0f} s)", flush=True)

    # 5-fold out-of-fold rates, folds by photo (a photo's close-ups stay with it)
    k = 5
    n_photos = len(real["whole"])
    photo_fold = np.arange(n_photos) % k
    oof = {"whole": [], "close": [], "neg": []}
    for f in range(k):
        tr_c = photo_fold[real["close_group"]] != f
        extra = np.vstack([real["whole_noisy"][photo_fold != f], real["close_noisy"][tr_c]]) if args.noise else None
        g = fit(np.vstack([real["whole"][photo_fold != f], real["close"][tr_c]]), neg[np.arange(len(neg)) % k != f],
                args.C, args.reject_real, spec.size, extra)
        oof["whole"] += accepted(real["whole"][photo_fold == f], g).tolist()
        oof["close"] += accepted(real["close"][photo_fold[real["close_group"]] == f], g).tolist()
        oof["neg"] += (~accepted(neg[np.arange(len(neg)) % k == f], g)).tolist()
    cv = {"whole_kept": float(np.mean(oof["whole"])), "closeups_kept": float(np.mean(oof["close"])),
          "synthetic_fit_rejected": float(np.mean(oof["neg"]))}
    print("5-fold out-of-fold:", json.dumps(cv), flush=True)

    extra = np.vstack([real["whole_noisy"], real["close_noisy"]]) if args.noise else None
    gate = fit(pos, neg, args.C, args.reject_real, spec.size, extra)
    gate["fitted_on"] = {"photos": len(real["whole"]), "closeups": len(real["close"]), "synthetic": len(neg),
                         "noisy_copies": NOISE if args.noise else None,
                         "C": args.C, "reject_real": args.reject_real, "script": "benchmarks/nonskin/fit_gate.py"}
    args.out.write_text(json.dumps(gate, indent=1) + "\n", encoding="utf-8")
    if args.model_json.name:  # Path("") has no name
        md = json.loads(args.model_json.read_text(encoding="utf-8"))
        md["ood"] = {"skin_fraction_min": 0.05, **(md.get("ood") or {}), "gate": gate}
        args.model_json.write_text(json.dumps(md, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    fresh = real_rows(args.data, 4, EVAL_SEED, spec)
    test, tfam = synthetic_rows(args.test_per_family, 0, nonskin.TEST, spec)
    rej = ~accepted(test, gate)
    from hypoderm.export.samples import SIZES, synthetic_skin_image

    sample_rng = np.random.default_rng(0)
    samples = np.array([feature_row(model_crop(synthetic_skin_image(sample_rng, SIZES[i % len(SIZES)]), spec))
                        for i in range(60)])
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.python_version()}".strip(),
        "command": " ".join(["PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nonskin/fit_gate.py",
                             *sys.argv[1:]]),
        "cv_5fold_out_of_fold": cv,
        "fit_in_sample": {"whole_kept": float(accepted(real["whole"], gate).mean()),
                          "closeups_kept": float(accepted(real["close"], gate).mean()),
                          "synthetic_fit_rejected": float((~accepted(neg, gate)).mean())},
        "held_out": {"fresh_closeups_mostly_skin_kept": float(accepted(fresh["close"], gate).mean()),
                     "fresh_closeups_mostly_skin": len(fresh["close"]),
                     "fresh_closeups_all_kept": float(accepted(fresh["close_all"], gate).mean()),
                     "fresh_closeups_all": len(fresh["close_all"]),
                     "fresh_closeups_mostly_skin_with_noise_kept": float(accepted(fresh["close_noisy"], gate).mean()),
                     "fresh_whole_with_noise_kept": float(accepted(fresh["whole_noisy"], gate).mean()),
                     "noise_std": NOISE,
                     "export_samples_synthetic_skin_kept": float(accepted(samples, gate).mean()),
                     "export_samples_synthetic_skin": len(samples),
                     "test_suite_rejected": float(rej.mean()), "test_suite_size": len(test),
                     "test_suite_rejected_per_family": {f: float(rej[tfam == f].mean()) for f in nonskin.FAMILIES}},
        "seconds": round(time.time() - t0, 1),
    }
    args.results.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
