"""CUDA path of the engine (AMP, channels-last, GradScaler state in last.pt); skipped without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hypoderm.checkpoint import load_checkpoint
from hypoderm.engine.config import TrainConfig
from hypoderm.engine.evaluate import evaluate_checkpoint
from hypoderm.engine.train import train


@pytest.mark.gpu
def test_cuda_amp_train_resume_and_evaluate(image_folder: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(image_folder), model="hypodermnet", folds=3, size=64, epochs=2, batch_size=4,
                      outlier_exposure=0.0, out=str(tmp_path / "run"), progress=False, device="cuda", amp=True,
                      ema=True, stop_after_epoch=1)
    run = train(cfg)
    last = load_checkpoint(run / "last.pt")
    assert last["scaler"] and last["scaler"]["scale"] > 0  # AMP was on
    assert all(t.device.type == "cpu" for t in last["state_dict"].values())  # portable checkpoint
    train(cfg.with_(resume=True, stop_after_epoch=None))
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    m = evaluate_checkpoint(run / "best.pt", out=tmp_path / "eval", device="cuda", n_bootstrap=20)
    assert m["n"] == 8 and 0.0 <= m["accuracy"] <= 1.0
    assert torch.cuda.max_memory_allocated() > 0
