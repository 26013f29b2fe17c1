"""Abstain threshold and temperature fitted on validation centre crops vs centre crops + close-ups, scored on
the test folds of the 120-epoch crop-tone cross-validation (benchmarks/shortcut/README.md, last table).
Run from the repository root: python benchmarks/shortcut/calibration_views.py"""
import numpy as np, torch, json
from pathlib import Path
from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
from hypoderm.data.splits import Split
from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.fold import readable_index
from hypoderm.engine.styleshift import build_views
from hypoderm.engine.calibration import fit_temperature, choose_abstain_threshold
from hypoderm.engine.metrics import expected_calibration_error
from hypoderm.inference import softmax
from hypoderm.preprocess import PreprocessSpec
from torchvision.transforms import v2
torch.set_num_threads(1)
import sys
TARGET = float(sys.argv[1]) if len(sys.argv) > 1 else 0.95
run = Path("benchmarks/shortcut/runs/hypodermnet-crop-tone-p40-128-e120")
spec = PreprocessSpec.for_size(128); cache = DecodedCache(spec)
index, _ = readable_index("../shared/data/hypopigmented", None, False, cache)
split = Split.load("benchmarks/comparison/h200_224/split.json"); labels = index.labels()
norm = v2.Compose([v2.CenterCrop(128), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.mean), list(spec.std))])
def logits_of(model, ims):
    with torch.no_grad(): return model(torch.stack([norm(x) for x in ims])).numpy()
agg = {"A": {"c": [], "v": []}, "B": {"c": [], "v": []}}
for f in range(5):
    ck = load_checkpoint(run / f"fold{f}" / "best.pt"); model = model_from_checkpoint(ck).eval()
    _, va, te = split.partition(f)
    def sets(idx):
        ims = [cache.get(index.samples[i].path) for i in idx]; keys = [index.relpath(index.samples[i]) for i in idx]
        vw, src = build_views(ims, keys, spec, views=["closeup"])["closeup"]
        return logits_of(model, ims), labels[idx], logits_of(model, vw), labels[idx][src]
    vc, vy, vv, vvy = sets(va); tc, ty, tv, tvy = sets(te)
    for name, (L, Y) in {"A": (vc, vy), "B": (np.concatenate([vc, vv]), np.concatenate([vy, vvy]))}.items():
        t = fit_temperature(L, Y); thr = choose_abstain_threshold(softmax(L, t), Y, TARGET)["threshold"]
        for key, (TL, TY) in {"c": (tc, ty), "v": (tv, tvy)}.items():
            p = softmax(TL, t); ans = p.max(1) >= thr
            agg[name][key].append(dict(t=t, thr=thr, ans=ans.mean(), acc=(p.argmax(1)[ans] == TY[ans]).mean() if ans.any() else np.nan,
                                       ece=expected_calibration_error(p, TY), wrong_conf=((p.argmax(1) != TY) & ans).mean()))
for name in agg:
    for key in agg[name]:
        rows = agg[name][key]
        print(name, key, {k: round(float(np.nanmean([r[k] for r in rows])), 3) for k in rows[0]})
