"""How much of ImageNet's function an ECA variant keeps before any fine-tuning, with ECA's fresh kernels at random
(PyTorch's default) or at zero (what `create_model(..., pretrained=...)` does now).

Each variant is built with ImageNet's 1000 classes, so everything but ECA loads; its batch-norm statistics are
re-estimated on the first half of the photos (a changed block changes what the next norm sees), and the second
half is scored: top-1 agreement with `mnv3s` (the network the weights were trained as) and the mean KL divergence
of the variant's prediction from mnv3s's.

    OMP_NUM_THREADS=1 python benchmarks/comparison/eca_start_kl.py --weights \
        ../shared/weights/mobilenet_v3_small-imagenet-tfslim.pth --photos ../shared/data/nonskin/index.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import torch
import torchvision.transforms as T
from PIL import Image

from hypoderm.models import ECA, create_model


def predict(name: str, weights: Path, x: torch.Tensor, eca_start: str, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    model = create_model(name, num_classes=1000, pretrained=weights)
    if eca_start == "random":
        for m in model.modules():
            if isinstance(m, ECA):
                m.conv.reset_parameters()  # PyTorch's default kernel, as before zero_fresh_attention
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batch
    half = len(x) // 2
    model.train()
    with torch.no_grad():
        model(x[:half])
        return model.eval()(x[half:]).softmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--photos", type=Path, required=True, help="a manifest CSV with a path column")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--seeds", type=int, default=5, help="draws of the random kernel")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = list(csv.DictReader(args.photos.open()))
    random.Random(0).shuffle(rows)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = torch.stack([tf(Image.open(args.photos.parent / r["path"]).convert("RGB")) for r in rows[:args.n]])
    ref = predict("mnv3s", args.weights, x, "zero")
    print("| model | ECA kernels | top-1 agreement with mnv3s | KL from mnv3s (nats) |\n|---|---|---|---|")
    for name in ("mnv3s-lrelu", "mnv3s-eca", "mnv3s-eca-lrelu", "hypodermnet"):
        for start in (("random", "zero") if "eca" in name or name == "hypodermnet" else ("-",)):
            agree, kl = [], []
            for seed in range(args.seeds if start == "random" else 1):  # a random kernel: several draws
                p = predict(name, args.weights, x, start, seed)
                agree.append((p.argmax(1) == ref.argmax(1)).float().mean().item())
                kl.append((ref * (ref.clamp_min(1e-9).log() - p.clamp_min(1e-9).log())).sum(1).mean().item())
            print(f"| {name} | {start}{f' ({len(kl)} draws)' if len(kl) > 1 else ''} | {span(agree)} | {span(kl)} |",
                  flush=True)


def span(v: list[float]) -> str:
    """'0.96', or the mean and range of several draws."""
    return f"{v[0]:.2f}" if len(v) == 1 else f"{sum(v) / len(v):.2f} ({min(v):.2f}-{max(v):.2f})"


if __name__ == "__main__":
    main()
