"""DDP through torchrun: 2 gloo processes on CPU train one epoch; rank 0 alone writes the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hypoderm.checkpoint import load_checkpoint


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_one_epoch(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "hypoderm.cli", "train", "--data", str(image_folder), "--model", "hypodermnet", "--folds", "3",
           "--size", "32", "--epochs", "1", "--outlier-exposure", "0", "--batch-size", "2", "--device", "cpu",
           "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("epoch   1/1") == 1  # one log line: rank 0 only
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["epoch"] == 1
    last = load_checkpoint(out / "last.pt")
    # 8 training images sharded over 2 ranks, batch 2: 2 steps per rank per epoch
    assert last["scheduler"]["last_epoch"] == 2
    assert not any(k.startswith("module.") for k in last["state_dict"])  # unwrapped weights
    best = load_checkpoint(out / "best.pt")
    assert best["ood"] is not None and torch.is_tensor(next(iter(best["state_dict"].values())))
