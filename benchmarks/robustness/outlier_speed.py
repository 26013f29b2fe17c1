"""Issue 28 item 7's cause: what outlier exposure costs a small training run (wall time, images per second).

Trains in this process (`hypoderm.engine.train.train`, one torch thread, no cache folder) on a synthetic
ImageFolder (tests/conftest.make_image_folder, 3 classes x 14 photos, 96 px), 48 px, 4 epochs, the default
recipe, with the default outlier exposure (0.5) and without it (0). Reports per setting the wall time of
the whole run and the training images per second over it (training images seen / wall time), and how many
outlier pictures were drawn. Run it against the code before a change with PYTHONPATH pointing at that code.

    PYTHONPATH=src nice -n 5 .venv/bin/python benchmarks/robustness/outlier_speed.py --out results/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import run_facts, write_result  # noqa: E402

from hypoderm_testkit.datasets import make_image_folder  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--label", default="", help="what code this measures (e.g. before, after)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    import torch

    import hypoderm.engine.outliers as outliers
    from hypoderm.engine.config import TrainConfig
    from hypoderm.engine.train import train

    torch.set_num_threads(1)
    runs = []
    with tempfile.TemporaryDirectory(prefix="outlier_speed-") as tmp:
        data = make_image_folder(Path(tmp) / "data", per_class=14, size=96)
        for weight in (0.5, 0.0):
            out = Path(tmp) / f"run-{weight}"
            cfg = TrainConfig(data=str(data), size=args.size, epochs=args.epochs, outlier_exposure=weight,
                              out=str(out), progress=False, device="cpu", patience=args.epochs + 1)
            t0 = time.perf_counter()
            train(cfg)
            wall = time.perf_counter() - t0
            rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
            shared = getattr(outliers, "_shared_bank", None)
            drawn = None
            if shared is not None and weight > 0:
                from hypoderm.inference.preprocess import PreprocessSpec

                drawn = shared(PreprocessSpec.for_size(args.size), 60, 0).drawn
            n_train = torch.load(out / "last.pt", weights_only=False)["data_summary"]["n_train"]
            # per epoch: whole batches only (drop_last) when there is more than one batch
            per_epoch = n_train // cfg.batch_size * cfg.batch_size if n_train > cfg.batch_size else n_train
            images = per_epoch * len(rows)
            runs.append({"outlier_exposure": weight, "wall_s": round(wall, 1), "training_images": images,
                         "images_per_s_over_the_run": round(images / wall, 2),
                         "final_train_loss": rows[-1]["train/loss"], "outlier_pictures_drawn": drawn})
    res = {"what": "a small run's cost with and without outlier exposure (issue 28 item 7)", "label": args.label,
           "setup": {"photos": 42, "size": args.size, "epochs": args.epochs, "threads": 1, "cache_dir": None},
           "runs": runs, **run_facts()}
    write_result(res, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
