"""Exit codes of the commands that run the library (issue 30): a bad input is a HypodermError raised where the input
is validated (exit 2, one line, no traceback); a builtin error from deep inside a run is a bug, never dressed up as a
user error: its traceback is printed and the exit code is 3 (hypoderm.cli.main)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypoderm.cli import main

# (command, its arguments ({data}: a synthetic image folder, {tmp}: a scratch folder), what the message says); each
# bad input is found by the library (config, registry, splits, audit, checkpoint), not by the command's own checks
BAD_INPUTS = [
    (["train", "--data", "{data}", "--folds", "3", "--fold", "7"], "fold must be in 0..2, got 7"),
    (["train", "--data", "{data}", "--model", "nosuch"], "unknown model 'nosuch'; valid models:"),
    (["cv", "--data", "{data}", "--lr", "0"], "lr must be a number > 0, got 0.0"),
    (["train", "--data", "{data}", "--lr", "nan"], "lr must be a number > 0, got nan"),
    (["cv", "--data", "{data}", "--freeze-bn", "--pretrained", "none"],
     "freeze_bn keeps the pretrained start's batch-norm statistics"),
    (["cv", "--data", "{tmp}/nowhere"], "nowhere"),
    (["compare", "--data", "{data}", "--models", "mnv3s,nosuch"], "unknown model 'nosuch'"),
    (["compare", "--data", "{data}", "--models", "mnv3s", "--label-smoothing", "1"], "label_smoothing must be in"),
    (["evaluate", "{tmp}/junk.pt"], "junk.pt"),
    (["bench", "--models", "mnv3s,resnet9"], "unknown model 'resnet9'"),
    (["data", "audit", "{data}", "--near-threshold", "99"], "near_threshold must be in 0..64"),
    (["data", "audit", "{data}", "--split", "{tmp}/junk.pt"], "junk.pt"),
    (["data", "split", "{data}", "--folds", "2"], "folds must be at least 3"),
    (["data", "split", "{tmp}/nowhere"], "nowhere"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUTS, ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else None)
def test_a_bad_input_is_a_one_line_user_error(argv: list[str], message: str, image_folder: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    argv = [a.format(data=image_folder, tmp=tmp_path) for a in argv]
    if argv[0] in ("train", "cv", "compare", "data"):
        argv += ["--out", str(tmp_path / "out")]
    rc = main(argv)
    err = capsys.readouterr().err
    command = " ".join(argv[:2] if argv[0] == "data" else argv[:1])
    assert rc == 2, err
    assert f"hypoderm {command}: error:" in err and message in err and "Traceback" not in err


def _bug(*args: object, **kwargs: object) -> None:
    raise ValueError("injected bug: shapes do not match")


@pytest.mark.parametrize("argv, where", [
    (["train", "--data", "{data}", "--size", "32", "--epochs", "1", "--max-steps", "1", "--no-progress"],
     "torch.nn.functional.conv2d"),
    (["cv", "--data", "{data}", "--folds", "3", "--size", "32", "--epochs", "1", "--max-steps", "1", "--no-progress"],
     "torch.nn.functional.conv2d"),
    (["compare", "--data", "{data}", "--models", "mnv3s", "--folds", "3", "--size", "32", "--epochs", "1",
      "--max-steps", "1", "--no-progress"], "torch.nn.functional.conv2d"),
    (["bench", "--models", "mnv3s", "--size", "32", "--runs", "1", "--warmup", "0", "--no-onnx"],
     "torch.nn.functional.conv2d"),
    (["data", "split", "{data}", "--folds", "3"], "hypoderm.data.splits.near_pairs"),
    (["data", "audit", "{data}", "--no-shortcut"], "hypoderm.data.audit.near_pairs"),
], ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else None)
def test_a_bug_deep_in_a_run_keeps_its_traceback_and_exits_3(argv: list[str], where: str, image_folder: Path,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Before issue 30 `user_errors(ValueError, ...)` wrapped whole runs: this printed as a one-line user error, exit 2.
    """
    monkeypatch.setattr(where, _bug)
    argv = [a.format(data=image_folder) for a in argv]
    rc = main(argv if argv[0] == "bench" else [*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "Traceback (most recent call last)" in err and "ValueError: injected bug: shapes do not match" in err
    assert "internal error (a bug in hypoderm; exit code 3)" in err and ": error: injected bug" not in err


def test_a_bug_in_evaluate_keeps_its_traceback_and_exits_3(image_folder: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--folds", "3", "--size", "32", "--epochs", "1", "--max-steps",
                 "1", "--no-progress", "--out", str(run)]) == 0
    monkeypatch.setattr("torch.nn.functional.conv2d", _bug)
    assert main(["evaluate", str(run / "best.pt"), "--out", str(tmp_path / "e"), "--bootstrap", "5", "--no-plots"]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ValueError: injected bug" in err
