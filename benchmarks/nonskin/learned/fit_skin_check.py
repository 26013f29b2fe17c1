"""Fit the learned skin check, judge it by held-out origin on both sides, and write the shipped assets.

    OMP_NUM_THREADS=2 python benchmarks/nonskin/learned/extract.py --shared ../shared --out /tmp/gatefeat.npz
    OMP_NUM_THREADS=2 python benchmarks/nonskin/learned/fit_skin_check.py /tmp/gatefeat.npz \
        --weights ../shared/weights/mobilenet_v3_small-imagenet-tfslim.pth --assets src/hypoderm/assets

extract.py cuts every photo's centre square and random close-ups at 128 px (skin: multisource v2, eleven
origins; not skin: data/nonskin, nine origins, a third skin-coloured; the synthetic FIT suite and the sample
photos of scikit-image/scikit-learn/Matplotlib; the synthetic TEST suite only for testing).

Held out (3 folds): each fold leaves out every third skin origin AND every third non-skin origin, trains the
check's last blocks on the rest, and scores what it left out, so every origin on both sides is scored by a check
that never saw it. The thresholds come from those held-out skin scores: `threshold` (refuse) keeps at least
1 - q_refuse of every skin origin, `answer_threshold` (withhold) at least 1 - q_answer of every origin. The
shipped check is then trained on everything; its thresholds are the held-out ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from folds import left_out, origin_folds  # this folder's fold definition (shared with the other probes)
from skimage import color

from hypoderm.export.int8.weights import quantize_graph_weights
from hypoderm.inference.skincheck import FORMAT, OUTPUT
from hypoderm.models.skincheck import FROZEN, SkinCheckNet, from_imagenet

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
TRAIN_SIDES = ("skin", "nonskin", "synthetic_fit", "samples")


def trunk_activations(net: SkinCheckNet, crops: np.ndarray) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 128):
            x = ((crops[i:i + 128].astype(np.float32) / 255 - MEAN) / STD).transpose(0, 3, 1, 2)
            out.append(net.trunk(torch.from_numpy(np.ascontiguousarray(x))))
    return torch.cat(out)


def recolour(src: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each source crop with the colours of a random target crop (Reinhard's transfer: every CIELAB channel's mean
    and spread matched): a shelf, a receipt or a raccoon in skin tones, so colour alone cannot say "skin"."""
    out = np.empty_like(src)
    for i, c in enumerate(src):
        lab = color.rgb2lab(c)
        ref = color.rgb2lab(targets[rng.integers(len(targets))])
        mu, sd = lab.mean((0, 1)), lab.std((0, 1)) + 1e-3
        lab = (lab - mu) / sd * ref.std((0, 1)) + ref.mean((0, 1))
        with warnings.catch_warnings():  # out-of-gamut colours are clipped, as intended
            warnings.simplefilter("ignore", UserWarning)
            out[i] = np.clip(color.lab2rgb(lab) * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def with_recoloured(z: dict[str, np.ndarray], copies: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Append `copies` recoloured versions of every real non-skin crop (view "recoloured", training only). The
    target skin colours of a non-skin origin come from the skin origins of the same fold, which are in training
    whenever that non-skin origin is, so no held-out skin origin lends its colours to a fold's negatives."""
    side, origin = z["side"], z["origin"]
    rng = np.random.default_rng(seed)
    new: dict[str, list[np.ndarray]] = {k: [] for k in ("crops", "side", "origin", "view", "category", "name")}
    for out_skin, out_non in origin_folds(side, origin):
        pool = z["crops"][(side == "skin") & np.isin(origin, out_skin)]
        src = np.where((side == "nonskin") & np.isin(origin, out_non))[0]
        for _ in range(copies):
            new["crops"].append(recolour(z["crops"][src], pool, rng))
            for k in ("side", "origin", "category", "name"):
                new[k].append(z[k][src])
            new["view"].append(np.full(len(src), "recoloured"))
    return {k: np.concatenate([z[k], *new[k]]) for k in new}


def fit_tail(weights: Path, acts: torch.Tensor, y: np.ndarray, idx: np.ndarray, epochs: int, seed: int) -> SkinCheckNet:
    """A check whose last blocks and head are trained on acts[idx] (class-balanced BCE, AdamW, one cycle)."""
    torch.manual_seed(seed)
    net = from_imagenet(weights)
    params = [*net.features[FROZEN:].parameters(), *net.head.parameters()]
    pos = y[idx].mean()
    w = torch.from_numpy(np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)).astype(np.float32))
    target = torch.from_numpy(y.astype(np.float32))
    opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.05)
    steps = epochs * (len(idx) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-4, total_steps=steps + 1)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        perm = torch.from_numpy(idx)[torch.randperm(len(idx), generator=g)]
        for i in range(0, len(perm) - 63, 64):
            b = perm[i:i + 64]
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(net.tail(acts[b]).squeeze(1), target[b],
                                                                         reduction="none") * w[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def scores(net: SkinCheckNet, acts: torch.Tensor, sel: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([net.tail(acts[torch.from_numpy(b)]).squeeze(1).numpy()
                               for b in np.array_split(np.where(sel)[0], max(1, int(sel.sum()) // 256))])


def export_int8(net: SkinCheckNet, path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "check.onnx"
        torch.onnx.export(net.eval(), torch.zeros(1, 3, 128, 128), str(fp32), input_names=["input"],
                          output_names=[OUTPUT], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, OUTPUT: {0: "N"}})
        model = onnx.load(str(fp32))
        quantize_graph_weights(model)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("npz", type=Path)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--assets", type=Path, help="write skin_check.onnx + skin_check.json here")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--q-refuse", type=float, default=0.002)
    ap.add_argument("--q-answer", type=float, default=0.10)
    ap.add_argument("--recolour", type=int, default=0, metavar="N",
                    help="add N skin-toned copies of every real non-skin crop to the negatives (training only)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    ap.add_argument("--scores", type=Path, default=Path("/tmp/skin_check_heldout.npz"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    z = {k: v for k, v in np.load(args.npz).items() if k in ("crops", "side", "origin", "view", "category", "name")}
    n0 = len(z["side"])  # the extracted crops; recoloured ones are appended after them
    if args.recolour:
        z = with_recoloured(z, args.recolour)
        print(f"{int((z['view'] == 'recoloured').sum())} recoloured crops in {time.time() - t0:.0f} s", flush=True)
    side, origin, view, category = z["side"], z["origin"], z["view"], z["category"]
    y = (side == "skin").astype(np.int64)
    acts = trunk_activations(from_imagenet(args.weights).eval(), z["crops"])
    print(f"trunk activations of {len(acts)} crops in {time.time() - t0:.0f} s", flush=True)
    train = np.isin(side, TRAIN_SIDES)
    folds = origin_folds(side, origin)
    skin_origins = sorted(set(origin[side == "skin"]))
    non_origins = sorted(set(origin[side == "nonskin"]))
    held = np.full(len(y), np.nan)
    test_scores = []
    for f, fold in enumerate(folds):
        left = left_out(side, origin, fold)
        net = fit_tail(args.weights, acts, y, np.where(train & ~left)[0], args.epochs, seed=f)
        held[left] = scores(net, acts, left)
        test_scores.append(scores(net, acts, side == "synthetic_test"))
        print(f"fold {f}: held out {', '.join(fold[0])} | {', '.join(fold[1])} ({time.time() - t0:.0f} s)", flush=True)
    per_origin = {o: held[(side == "skin") & (origin == o)] for o in skin_origins}
    t_refuse = float(min(np.quantile(s, args.q_refuse) for s in per_origin.values()))
    t_answer = float(min(np.quantile(s, args.q_answer) for s in per_origin.values()))
    rows = []
    for s_name, origins in (("skin", skin_origins), ("nonskin", non_origins)):
        for o in origins:
            for v in ("centre", "closeup"):
                sel = (side == s_name) & (origin == o) & (view == v)
                if not sel.any():
                    continue
                s = held[sel]
                row = {"side": s_name, "origin": o, "view": v, "n": int(sel.sum()),
                       "refused": float(np.mean(s < t_refuse)), "refused_or_withheld": float(np.mean(s < t_answer))}
                sc = category[sel] == "skin_coloured"
                if s_name == "nonskin" and sc.any():
                    row.update(skin_coloured_n=int(sc.sum()),
                               skin_coloured_refused_or_withheld=float(np.mean(s[sc] < t_answer)))
                rows.append(row)
    ts = np.mean(test_scores, axis=0)
    held[side == "synthetic_test"] = ts  # never in any fold's training: the mean of the three checks
    rows.append({"side": "synthetic_test", "n": int(ts.size), "refused": float(np.mean(ts < t_refuse)),
                 "refused_or_withheld": float(np.mean(ts < t_answer)), "note": "mean score of the 3 fold checks"})
    np.savez(args.scores, held=held[:n0], side=side[:n0], origin=origin[:n0], view=view[:n0],
             category=category[:n0], name=z["name"][:n0])
    for r in rows:
        print(json.dumps(r))
    summary = {"command": "benchmarks/nonskin/learned/fit_skin_check.py", "epochs": args.epochs,
               "recolour": args.recolour,
               "q_refuse": args.q_refuse, "q_answer": args.q_answer, "threshold": t_refuse,
               "answer_threshold": t_answer, "folds": [list(fold) for fold in folds],
               "rows": rows}
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    if args.assets:
        net = fit_tail(args.weights, acts, y, np.where(train)[0], args.epochs, seed=0)
        export_int8(net, args.assets / "skin_check.onnx")
        sha = hashlib.sha256(args.weights.read_bytes()).hexdigest()
        block = {"format": FORMAT, "output": OUTPUT, "threshold": round(t_refuse, 4),
                 "answer_threshold": round(t_answer, 4), "input_size": 128,
                 "network": f"MobileNetV3-Small, ImageNet features[:{FROZEN}] frozen, features[{FROZEN}:] + a "
                            "576 -> 1 head fitted",
                 "imagenet_weights": {"file": args.weights.name, "sha256": sha,
                                      "source": "TF-slim MobileNetV3-Small 1.0 (Apache-2.0)"},
                 "fitted_on": {"skin": int((side == "skin").sum()),
                               "nonskin": int(((side == "nonskin") & (view != "recoloured")).sum()),
                               "nonskin_recoloured": int((view == "recoloured").sum()),
                               "synthetic": int((side == "synthetic_fit").sum()),
                               "samples": int((side == "samples").sum())},
                 "thresholds_from": "held-out-origin scores (benchmarks/nonskin/learned/results.json)"}
        (args.assets / "skin_check.json").write_text(json.dumps(block, indent=2) + "\n")
        print(f"wrote {args.assets / 'skin_check.onnx'} ({(args.assets / 'skin_check.onnx').stat().st_size} bytes)")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
