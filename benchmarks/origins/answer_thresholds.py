"""A higher bar for one answer (`hypoderm export --answer-threshold vitiligo=P`), judged on photos no model saw:
what it takes from the false "vitiligo" on healthy skin of unseen origins (issue 26: <= 10% of every held-out
healthy origin), and what it costs the vitiligo photos themselves (only testable within their one origin, so by
ordinary CV).

Both from saved predictions, no training: the held-out run's temperature-scaled probabilities per fold
(`screen.json`/`screen.npz`, each fold's model never saw that origin) with each fold's own abstain threshold, and
the ordinary CV of the same recipe (`ordinary_cv/mnv3s-bundled/`). Each photo's status is what `predict` and the
page decide from the probabilities (`hypoderm.inference.verdict.answer_threshold`; the not-skin checks left out:
every photo here is skin).

    .venv/bin/python benchmarks/origins/answer_thresholds.py --out benchmarks/origins/answer_thresholds.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hypoderm.inference.verdict import answer_threshold

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import summarize  # noqa: E402  (benchmarks/summarize.py)


def statuses(probs: np.ndarray, thresholds: np.ndarray, names: list[str], answer: dict[str, float]) -> np.ndarray:
    """True where the photo is answered (status ok): its top probability reaches `answer_threshold` for its top
    class, with the photo's own model's abstain threshold."""
    pred = probs.argmax(1)
    bar = np.array([answer_threshold({"abstain_threshold": float(t), "class_names": names,
                                      "answer_thresholds": answer}, names[k]) for t, k in zip(thresholds, pred,
                                                                                              strict=True)])
    return probs.max(1) >= bar


def fold_predictions(folder: Path, bases: list[str], texts: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                         np.ndarray, list[str]]:
    """(y, probs, fold, per-photo abstain threshold, class names) pooled over the runs `bases` inside `folder`
    (packed or on disk; `texts` = summarize.read(folder))."""
    ys, ps, fs, ts = [], [], [], []
    names: list[str] = []
    for base in bases:
        arr = summarize.arrays(folder, f"{base}/pooled_test_predictions.npz")
        names = [str(c) for c in arr["class_names"]]
        thr = {int(f): texts[f"{base}/fold{int(f)}/metrics.json"]["abstain"]["threshold"] for f in set(arr["fold"])}
        ys.append(arr["y_true"])
        ps.append(arr["probs"])
        fs.append(arr["fold"])
        ts.append(np.array([thr[int(f)] for f in arr["fold"]]))
    return np.concatenate(ys), np.concatenate(ps), np.concatenate(fs), np.concatenate(ts), names


def held_out_runs(texts: dict, run: str) -> list[str]:
    """`run`'s held-out sub-runs in screen.json's `texts` (holdout, holdout-a, holdout-b, holdout-fN, ...)."""
    return sorted({k.rsplit("/", 1)[0] for k in texts if k.startswith(f"{run}/holdout") and
                   k.endswith("/summary.json")})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="v2-imagenet-cf-realoe-mnv3s", help="held-out run in screen.json")
    ap.add_argument("--cv", type=Path, default=HERE / "ordinary_cv" / "mnv3s-bundled", help="ordinary CV run folder")
    ap.add_argument("--cls", default="vitiligo", help="the class given a higher bar")
    ap.add_argument("--normal", default="normal_skin")
    ap.add_argument("--grid", default="0,0.7,0.75,0.8,0.85,0.9,0.95")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    screen = summarize.read(HERE / "screen")
    runs = held_out_runs(screen, args.run)
    y, p, fold, thr, names = fold_predictions(HERE / "screen", runs, screen)
    origins = screen[f"{runs[0]}/summary.json"]["holdout"]["values"]  # fold k holds out origins[k]
    cy, cp, _, cthr, cnames = fold_predictions(args.cv.parent, [args.cv.name], summarize.read(args.cv.parent))
    assert names == cnames, (names, cnames)
    v = names.index(args.cls)
    rows = []
    for bar in [float(x) for x in args.grid.split(",")]:
        answer = {args.cls: bar} if bar > 0 else {}
        ok, cok = statuses(p, thr, names, answer), statuses(cp, cthr, names, answer)
        pred, cpred = p.argmax(1), cp.argmax(1)
        held = {}
        for f in sorted(set(fold.tolist())):
            for c in sorted(set(y[fold == f].tolist())):
                m = (fold == f) & (y == c)
                held[f"{origins[f]} {names[c]}"] = {
                    "n": int(m.sum()), "recall": float(np.mean(pred[m] == c)), "answered": float(np.mean(ok[m])),
                    "right_and_answered": float(np.mean(ok[m] & (pred[m] == c))),
                    f"{args.cls}_ok": float(np.mean(ok[m] & (pred[m] == v)))}
        healthy = {k: r for k, r in held.items() if k.endswith(args.normal)}
        vit, other = cy == v, cy != v
        rows.append({
            "bar": bar or None,
            "held_out": held,
            "held_out_healthy_at_most_10pct": sum(r[f"{args.cls}_ok"] <= 0.10 for r in healthy.values()),
            "held_out_healthy_origins": len(healthy),
            "ordinary_cv": {
                f"{args.cls}_n": int(vit.sum()),
                f"{args.cls}_found_answered": float(np.mean(cok[vit] & (cpred[vit] == v))),
                f"{args.cls}_answered": float(np.mean(cok[vit])),
                f"false_{args.cls}_ok_on_others": float(np.mean(cok[other] & (cpred[other] == v))),
                "answered_all": float(np.mean(cok)),
                "right_and_answered_all": float(np.mean(cok & (cpred == cy)))}})
        cv = rows[-1]["ordinary_cv"]
        key = f"{args.cls}_ok"
        said = ", ".join(f"{k.split()[0]} {100 * r[key]:.0f}%" for k, r in healthy.items())
        print(f"bar {bar:.2f}: held-out healthy with '{args.cls}' ok <= 10%: "
              f"{rows[-1]['held_out_healthy_at_most_10pct']}/{len(healthy)} "
              f"({said}); "
              f"ordinary CV: {args.cls} found+answered {100 * cv[args.cls + '_found_answered']:.0f}% "
              f"(answered {100 * cv[args.cls + '_answered']:.0f}%), false {args.cls} ok on others "
              f"{100 * cv['false_' + args.cls + '_ok_on_others']:.1f}%, all answered {100 * cv['answered_all']:.0f}%")
    if args.out:
        args.out.write_text(json.dumps({"command": "benchmarks/origins/answer_thresholds.py", "run": args.run,
                                        "cv": str(args.cv.relative_to(HERE.parent.parent)), "class": args.cls,
                                        "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
