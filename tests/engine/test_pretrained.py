"""`--pretrained PATH` for train, cv and compare: flag, $HYPODERM_IMAGENET_WEIGHTS, 'none'; the checkpoint and
model.json record the weights' file name and sha256; weights that fit no tensor of the model are refused.
A tiny fake weights file (torch.save of a matching state dict) stands in for the real ImageNet file."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch

from hypoderm.commands.options import add_train_arguments, config_from_args
from hypoderm.engine.config import WEIGHTS_ENV


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state dict in torchvision's MobileNetV3-Small format (random values: only names and shapes matter)."""
    import torchvision

    path = tmp_path_factory.mktemp("w") / "fake-mnv3s.pth"
    torch.manual_seed(3)
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict(), path)
    return path


def _pretrained(argv: list[str], command: str = "train") -> str | None:
    p = argparse.ArgumentParser()
    add_train_arguments(p, cv=command == "cv", study=command == "compare")
    return config_from_args(p.parse_args(["--data", "d", *argv])).pretrained


@pytest.mark.parametrize("command", ["train", "cv", "compare"])
def test_flag_environment_variable_and_none(command: str, weights: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert _pretrained([], command) is None  # no flag, no variable: from scratch, no file assumed
    assert _pretrained(["--pretrained", str(weights)], command) == str(weights)
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    assert _pretrained([], command) == str(weights)  # the documented default
    assert _pretrained(["--pretrained", "none"], command) is None  # the flag wins: scratch
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "moved.pth"))
    with pytest.raises(ValueError, match=f"{WEIGHTS_ENV}: no weights file at .*moved.pth"):
        _pretrained([], command)
    with pytest.raises(ValueError, match="--pretrained: no weights file at .*nowhere.pth"):
        _pretrained(["--pretrained", str(tmp_path / "nowhere.pth")], command)


def test_a_missing_weights_file_is_one_line_error(image_folder: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    assert main(["cv", "--data", str(image_folder), "--pretrained", str(tmp_path / "x.pth"), "--out",
                 str(tmp_path / "cv")]) == 2
    err = capsys.readouterr().err
    assert "hypoderm cv: error: --pretrained: no weights file at" in err and "Traceback" not in err


def test_weights_for_another_architecture_are_refused(weights: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """resnet18 given MobileNetV3 weights would silently start from scratch: `train` and `cv` refuse it;
    a comparison study runs such a model from scratch and says so."""
    from hypoderm.models import PretrainedMismatchError, create_model
    from hypoderm.study.compare import pretrained_starts

    with pytest.raises(PretrainedMismatchError, match="fake-mnv3s.pth has no tensor that fits resnet18.*none"):
        create_model("resnet18", num_classes=2, pretrained=weights)
    assert pretrained_starts(str(weights), ["mnv3s", "resnet18"]) == {"mnv3s": str(weights), "resnet18": None}
    assert "note: resnet18: fake-mnv3s.pth holds no weights for it; it trains from scratch" in capsys.readouterr().out
    assert pretrained_starts(None, ["mnv3s"]) == {"mnv3s": None}


@pytest.mark.slow
def test_checkpoint_and_model_json_name_the_weights(weights: Path, image_folder: Path, tmp_path: Path) -> None:
    from hypoderm.checkpoint import load_checkpoint
    from hypoderm.cli import main
    from hypoderm.engine.config import TrainConfig
    from hypoderm.engine.train import train

    cfg = TrainConfig(data=str(image_folder), model="mnv3s", folds=3, size=32, epochs=1, batch_size=4, max_steps=1,
                      out=str(tmp_path / "run"), outlier_exposure=0.0, progress=False, device="cpu",
                      pretrained=str(weights))
    run = train(cfg)
    record = {"file": "fake-mnv3s.pth", "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["pretrained"] == record and last["pretrained"] == record  # a name, never where it lay
    scratch = train(cfg.with_(pretrained=None, out=str(tmp_path / "scratch")))
    assert load_checkpoint(scratch / "best.pt")["pretrained"] is None
    out = tmp_path / "m.onnx"
    assert main(["export", str(run / "best.pt"), "--out", str(out), "--force"]) == 0  # 1 step: broken, marked
    assert json.loads(out.with_suffix(".json").read_text())["pretrained"] == record
