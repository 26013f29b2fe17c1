"""`hypoderm train`: checkpoints, metrics log, exact resume, leakage refusal, user errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
from hypoderm.engine.config import TrainConfig
from hypoderm.engine.train import TrainError, train
from hypoderm_testkit.datasets import make_image_folder

CHECKPOINT_KEYS = {"format", "model_name", "num_classes", "model_kwargs", "state_dict", "class_names", "preprocess",
                   "config", "split", "epoch", "metrics", "data_summary"}
CALIBRATION_KEYS = {"temperature", "abstain_threshold", "ood", "complete"}  # best.pt only, written once
RESUME_KEYS = {"optimizer", "scheduler", "scaler", "ema", "rng", "early_stop"}


def tiny(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), model="hypodermnet", folds=3, size=32, epochs=1, batch_size=4, out=str(out),
                outlier_exposure=0.0, progress=False, device="cpu", warmup_epochs=0.5)
    return TrainConfig(**{**base, **kw})


def test_one_epoch_writes_checkpoints_and_metrics(image_folder: Path, tmp_path: Path) -> None:
    run = train(tiny(image_folder, tmp_path / "run"))
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert set(best) >= CHECKPOINT_KEYS | CALIBRATION_KEYS and not RESUME_KEYS & set(best) and best["complete"]
    assert set(last) >= CHECKPOINT_KEYS | RESUME_KEYS and not CALIBRATION_KEYS & set(last)
    assert best["class_names"] == ["a", "b", "c"] and best["num_classes"] == 3
    assert best["preprocess"]["size"] == 32 and best["config"]["model"] == "hypodermnet"
    assert best["split"]["format"] == "hypoderm-split/1" and (run / "split.json").is_file()
    assert best["temperature"] > 0 and 1 / 3 <= best["abstain_threshold"] <= 1
    assert "max_logit_min" in best["ood"]
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    assert {"train/loss", "val/loss", "val/accuracy", "val/macro_f1", "lr"} <= set(rows[0])
    model = model_from_checkpoint(best)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert not list(run.glob("*.tmp"))  # atomic writes leave no temporaries


def test_sampler_balance_and_ema_train(image_folder: Path, tmp_path: Path) -> None:
    run = train(tiny(image_folder, tmp_path / "run", balance="sampler", ema=True, ema_decay=0.5, epochs=2))
    last = load_checkpoint(run / "last.pt")
    assert last["ema"] is not None and last["epoch"] == 2
    # with EMA the exported weights are the averaged ones, not the raw training weights
    assert any(not torch.equal(last["state_dict"][k], last["state_dict_train"][k])
               for k in last["state_dict"] if last["state_dict"][k].is_floating_point())


def test_resume_after_kill_equals_uninterrupted_run(image_folder: Path, tmp_path: Path) -> None:
    # MixStyle's draws must replay on resume too, and the trunk, frozen for epoch 1, must wake up in the resumed part
    kw = dict(epochs=3, deterministic=True, seed=3, mixstyle=0.5, head_epochs=1)
    full = train(tiny(image_folder, tmp_path / "full", **kw))
    killed = train(tiny(image_folder, tmp_path / "killed", stop_after_epoch=1, **kw))
    # a killed run has no best.pt: it is written once, calibrated and marked complete, when training ends
    assert load_checkpoint(killed / "last.pt")["epoch"] == 1 and not (killed / "best.pt").exists()
    assert load_checkpoint(killed / "last.pt")["best"]["epoch"] == 1
    (tmp_path / "killed" / "last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-write leaves
    resumed = train(tiny(image_folder, tmp_path / "killed", resume=True, **kw))
    assert not list(resumed.glob("*.tmp"))
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key in ("state_dict", "state_dict_train"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs after resume"
    for s1, s2 in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(s1["exp_avg"], s2["exp_avg"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    assert a["early_stop"] == b["early_stop"]
    la = (full / "metrics.jsonl").read_text().splitlines()
    lb = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["val/loss"] for r in la] == [json.loads(r)["val/loss"] for r in lb]
    best_a, best_b = load_checkpoint(full / "best.pt"), load_checkpoint(resumed / "best.pt")
    assert best_a["epoch"] == best_b["epoch"] and best_a["temperature"] == best_b["temperature"]
    assert all(torch.equal(best_a["state_dict"][k], best_b["state_dict"][k]) for k in best_a["state_dict"])


# Trains in a child process that SIGKILLs itself when epoch KILL_EPOCH's second batch is fetched: a real
# kill -9 mid-epoch (after one optimiser step of that epoch), at a moment that does not depend on timing.
KILLED_CHILD = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import hypoderm.engine.train as t
from hypoderm.engine.config import TrainConfig
cfg, kill_epoch = TrainConfig(**json.loads(sys.argv[1])), int(sys.argv[2])
one_epoch, calls = t.train_one_epoch, []

class DyingLoader:
    def __init__(self, loader):
        self.loader = loader
    def __len__(self):
        return len(self.loader)
    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

def train_one_epoch(model, loader, *args, **kwargs):
    calls.append(1)
    return one_epoch(model, DyingLoader(loader) if len(calls) == kill_epoch else loader, *args, **kwargs)

t.train_one_epoch = train_one_epoch
t.train(cfg)
"""


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_equals_uninterrupted_run(image_folder: Path, tmp_path: Path) -> None:
    """kill -9 in the middle of epoch 2 (outlier exposure and EMA on: their state must resume too)."""
    import os
    import signal
    import subprocess
    import sys

    kw = dict(epochs=3, seed=5, outlier_exposure=0.5, ema=True, ema_decay=0.9, recipe="crop-tone")
    full = train(tiny(image_folder, tmp_path / "full", **kw))
    killed = tmp_path / "killed"
    cfg = tiny(image_folder, killed, **kw).to_dict()
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, json.dumps(cfg), "2"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "epoch   1/3" in proc.stdout and "epoch   2/3" not in proc.stdout  # killed inside epoch 2
    assert load_checkpoint(killed / "last.pt")["epoch"] == 1 and not (killed / "best.pt").exists()
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = train(tiny(image_folder, killed, resume=True, **kw))
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key in ("state_dict", "state_dict_train", "ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            if torch.is_tensor(a[key][k]):
                assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs after kill -9 and resume"
    for s1, s2 in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and torch.equal(s1["exp_avg_sq"], s2["exp_avg_sq"])
    rows = [[{k: v for k, v in json.loads(r).items() if k not in ("time_s", "train/images_per_s")}
             for r in (d / "metrics.jsonl").read_text().splitlines()] for d in (full, resumed)]
    assert rows[0] == rows[1] and [r["epoch"] for r in rows[1]] == [1, 2, 3]
    best_a, best_b = load_checkpoint(full / "best.pt"), load_checkpoint(resumed / "best.pt")
    assert best_a["epoch"] == best_b["epoch"] and best_a["temperature"] == best_b["temperature"]
    assert all(torch.equal(best_a["state_dict"][k], best_b["state_dict"][k]) for k in best_a["state_dict"])


def test_resume_needs_a_run_and_a_run_is_not_overwritten(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="no .*last.pt"):
        train(tiny(image_folder, tmp_path / "none", resume=True))
    run = train(tiny(image_folder, tmp_path / "run", max_steps=1))
    with pytest.raises(TrainError, match="--resume"):
        train(tiny(image_folder, run, max_steps=1))
    # --resume with flags that would change the experiment: refused, naming them (they were silently dropped,
    # and a finished run "resumed" with more epochs trained nothing)
    before = (run / "last.pt").read_bytes()
    with pytest.raises(TrainError, match=r"other settings \(model 'hypodermnet' there, 'mnv3s' now; lr 0.002 there, "
                                         r"0.5 now\)"):
        train(tiny(image_folder, run, max_steps=1, resume=True, model="mnv3s", lr=0.5))
    with pytest.raises(TrainError, match=r"epochs 1 there, 3 now"):
        train(tiny(image_folder, run, max_steps=1, resume=True, epochs=3))
    assert (run / "last.pt").read_bytes() == before
    # the run-control flags may change
    assert train(tiny(image_folder, run, max_steps=1, resume=True, workers=0, progress=False)) == run
    # an --out that is a file is a user error, not FileExistsError
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    with pytest.raises(TrainError, match=r"--out .*taken\.txt is a file, not a folder"):
        train(tiny(image_folder, taken))
    assert taken.read_text() == "keep me"


def test_a_split_left_by_a_failed_run_is_not_reused_for_other_settings(image_folder: Path, tmp_path: Path) -> None:
    """A run that failed after writing split.json (e.g. on a bad --pretrained file) left it in its folder; the next
    run there with other --folds/--seed trained on the stale split while its checkpoint recorded the new settings.
    Now it is refused, naming both; with the same settings the split is the one they draw, and is reused."""
    out = tmp_path / "run"
    with pytest.raises(Exception, match="pretrained weights not found"):
        train(tiny(image_folder, out, pretrained=str(tmp_path / "missing.pth"), model="mnv3s"))
    assert (out / "split.json").is_file() and not (out / "last.pt").exists()
    with pytest.raises(TrainError, match=r"split\.json, left in this folder by an earlier run, is 3 folds drawn with "
                                         r"seed 0, but this run asks for 4 folds with seed 7"):
        train(tiny(image_folder, out, folds=4, seed=7, max_steps=1))
    run = train(tiny(image_folder, out, max_steps=1))
    assert load_checkpoint(run / "best.pt")["split"]["folds"] == 3


def test_leaky_split_is_refused_unless_allowed(tmp_path: Path) -> None:
    from hypoderm.data.dataset import load_index
    from hypoderm.data.splits import Split, make_split

    data = make_image_folder(tmp_path / "data")
    shutil.copy(data / "a" / "a_000.png", data / "a" / "a_copy.png")
    split = make_split(load_index(data), folds=3, seed=0)
    d = split.to_dict()
    folds = {s["path"]: s["fold"] for s in d["samples"]}
    assert folds["a/a_copy.png"] == folds["a/a_000.png"]  # the split keeps duplicates together...
    for s in d["samples"]:
        if s["path"] == "a/a_copy.png":
            s["fold"] = (s["fold"] + 1) % 3  # ...until someone edits it
    (tmp_path / "leaky.json").write_text(json.dumps(d))
    assert Split.load(tmp_path / "leaky.json").folds == 3
    with pytest.raises(TrainError, match="leak"):
        train(tiny(data, tmp_path / "run", split=str(tmp_path / "leaky.json")))
    run = train(tiny(data, tmp_path / "run2", split=str(tmp_path / "leaky.json"), allow_leakage=True, max_steps=1))
    assert (run / "best.pt").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--data", "{tmp}/missing", "--model", "hypodermnet"], "missing"),
    (["--data", "{data}", "--model", "no_such_model", "--folds", "3"], "unknown model"),
    (["--data", "{data}", "--folds", "3", "--fold", "7"], "fold"),
    (["--data", "{data}", "--folds", "3", "--device", "tpu"], "device"),
])
def test_cli_errors_are_one_line_messages(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                          argv: list[str], message: str) -> None:
    from hypoderm.cli import main

    argv = [a.format(tmp=tmp_path, data=image_folder) for a in argv]
    rc = main(["train", *argv, "--size", "32", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "hypoderm train: error:" in err and message in err and "Traceback" not in err


def test_final_mode_trains_on_every_fold_but_validation(image_folder: Path, tmp_path: Path) -> None:
    normal = load_checkpoint(train(tiny(image_folder, tmp_path / "cv-fold")) / "best.pt")["data_summary"]
    final = load_checkpoint(train(tiny(image_folder, tmp_path / "final", final=True)) / "best.pt")
    s = final["data_summary"]
    assert s["n_test"] == 0 and s["n_val"] == normal["n_val"]
    assert s["n_train"] == normal["n_train"] + normal["n_test"]
    assert final["architecture"] == "hypodermnet-dil7"  # the alias is resolved and stored


def test_model_problems_flag_the_broken_model_of_issue_12() -> None:
    """The 3-epoch model of issue 12: one class predicted, macro-F1 0.235, temperature pinned at 20."""
    from hypoderm.model_quality import model_problems

    codes = [p["code"] for p in model_problems({"val/macro_f1": 0.235, "val/predicted_counts": [0, 62]}, 20.0, 2)]
    assert codes == ["collapsed", "chance_f1", "temperature_bound"]
    assert model_problems({"val/macro_f1": 0.76, "val/predicted_counts": [20, 42]}, 0.64, 2) == []
    assert [p["code"] for p in model_problems({"val/macro_f1": 0.30}, 1.0, 3)] == ["chance_f1"]  # 1/3 is chance


def test_train_warns_when_the_model_is_broken(image_folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """`train` says so when the fitted temperature hits its bound (and records predicted counts)."""
    import hypoderm.engine.calibration as calibration

    monkeypatch.setattr(calibration, "fit_temperature", lambda logits, labels, **kw: 20.0)
    run = train(tiny(image_folder, tmp_path / "run"))
    out = capsys.readouterr().out
    assert "WARNING: the fitted temperature 20 hit its bound" in out and "--force" in out
    counts = load_checkpoint(run / "best.pt")["metrics"]["val/predicted_counts"]
    assert len(counts) == 3 and sum(counts) > 0


def test_close_up_recipes_calibrate_on_close_ups_too(image_folder: Path, tmp_path: Path) -> None:
    crop = load_checkpoint(train(tiny(image_folder, tmp_path / "crop", recipe="crop-tone")) / "best.pt")
    n_val = crop["data_summary"]["n_val"]
    abstain = crop["metrics"]["val/abstain"]
    assert abstain["fitted_on"] == "centre crops + close-ups"
    assert crop["ood"]["n"] == n_val  # the max-logit floor stays on the centre crops
    off = tiny(image_folder, tmp_path / "off", recipe="crop-tone", calibrate_closeups=False)
    assert load_checkpoint(train(off) / "best.pt")["metrics"]["val/abstain"]["fitted_on"] == "centre crops"
    standard = load_checkpoint(train(tiny(image_folder, tmp_path / "std", recipe="standard")) / "best.pt")
    assert standard["metrics"]["val/abstain"]["fitted_on"] == "centre crops"


def test_counterfactual_needs_known_classes(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="unknown class"):
        train(tiny(image_folder, tmp_path / "cf", counterfactual="normal_skin:vitiligo"))
    run = train(tiny(image_folder, tmp_path / "cf2", counterfactual="a:b", counterfactual_p=0.5))
    assert load_checkpoint(run / "best.pt")["config"]["counterfactual"] == "a:b"
