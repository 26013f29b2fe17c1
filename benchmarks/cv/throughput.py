"""Training throughput: the full train loop (cache -> augmentation -> DataLoader -> step) vs the model step alone.

    OMP_NUM_THREADS=1 python benchmarks/cv/throughput.py --data ../shared/data/hypopigmented \
        --model hypodermnet --size 128 --batch-size 32 --steps 30 --threads 1

The model-step loop runs the same optimiser step on one pre-made batch of the same shape, so the
ratio full / step-only shows how much of the time goes to data loading (goal: >= 90%).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from torch import nn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="hypodermnet")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (AMP + channels-last on cuda, as in training)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (median reported)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from hypoderm.engine.cache import DecodedCache
    from hypoderm.engine.data import CachedImageDataset, build_train_loader, train_transform
    from hypoderm.engine.fold import readable_index
    from hypoderm.inference.preprocess import PreprocessSpec
    from hypoderm.models import create_model

    spec = PreprocessSpec.for_size(args.size)
    cache = DecodedCache(spec)
    t0 = time.perf_counter()
    index, _ = readable_index(args.data, None, False, cache)
    decode_s = time.perf_counter() - t0
    labels = index.labels().tolist()
    ds = CachedImageDataset([cache.get(s.path) for s in index.samples], labels, train_transform(spec))
    g = torch.Generator().manual_seed(0)
    loader = build_train_loader(ds, batch_size=args.batch_size, workers=args.workers, balance="none",
                                num_classes=len(index.class_names), generator=g,
                                pin_memory=args.device.startswith("cuda"))

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=len(index.class_names)).train().to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=cuda):
            loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def full_loop(n: int) -> tuple[int, float]:
        seen, t = 0, time.perf_counter()
        while seen < n * args.batch_size:
            for x, y in loader:
                step(x, y)
                seen += len(y)
                if seen >= n * args.batch_size:
                    break
        sync()
        return seen, time.perf_counter() - t

    x0 = torch.randn(args.batch_size, 3, args.size, args.size, device=dev)
    y0 = torch.randint(0, len(index.class_names), (args.batch_size,), device=dev)

    def step_loop(n: int) -> tuple[int, float]:
        t = time.perf_counter()
        for _ in range(n):
            step(x0, y0)
        sync()
        return n * args.batch_size, time.perf_counter() - t

    # loader-only: the cost of augmentation + collation alone
    t = time.perf_counter()
    seen = 0
    for x, _ in loader:
        seen += len(x)
    loader_ips = seen / (time.perf_counter() - t)

    step_loop(args.warmup)
    full_loop(args.warmup)
    # interleave the two measurements so changes in machine load hit both alike; medians over rounds
    per = max(1, args.steps // args.rounds)
    full, only, ratios = [], [], []
    for _ in range(args.rounds):
        n, tt = full_loop(per)
        full.append(n / tt)
        n, tt = step_loop(per)
        only.append(n / tt)
        ratios.append(full[-1] / only[-1])
    full_ips, step_ips = float(np.median(full)), float(np.median(only))
    result = {
        "model": args.model, "size": args.size, "resize_size": spec.resize_size, "batch_size": args.batch_size,
        "steps": args.steps, "workers": args.workers, "threads": args.threads, "images": len(index.samples),
        "decode_all_s": round(decode_s, 2), "cache_mb": round(cache.nbytes() / 1e6, 1),
        "loader_only_images_per_s": round(loader_ips, 1), "full_loop_images_per_s": round(full_ips, 1),
        "model_step_images_per_s": round(step_ips, 1), "ratio_of_medians": round(full_ips / step_ips, 3),
        "ratio_per_round": [round(r, 3) for r in ratios], "device": str(dev),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__, "machine": platform.machine(),
        # DataLoader's pin-memory thread (CUDA runs) resets the process-wide thread count to 1
        "torch_threads_at_end": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
