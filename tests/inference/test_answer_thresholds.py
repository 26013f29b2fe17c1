"""A higher bar for one answer (`answer_thresholds` in model.json, `hypoderm export --answer-threshold CLASS=P`): the
top class named there is answered only at probability >= P, else the answer is withheld (uncertain,
low_confidence); other classes keep the abstain threshold, and the chance floor still holds. The page applies the
same rule (tests/parity/test_verdict.py)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from hypoderm.checkpoint import load_checkpoint
from hypoderm.inference import result_from_logits
from hypoderm.inference.metadata import ModelLoadError, validate_metadata
from hypoderm.inference.verdict import answer_threshold

NAMES = ["normal_skin", "other_lesion", "vitiligo"]
NO_OOD = {"skin_fraction_min": 0.0, "max_logit_min": -1e9, "gate": None}
CROP = np.full((8, 8, 3), (200, 150, 120), dtype=np.uint8)


def _md(threshold: float = 0.55, answer: dict | None = None) -> dict:
    md = {"class_names": NAMES, "temperature": 1.0, "abstain_threshold": threshold, "ood": NO_OOD}
    return {**md, "answer_thresholds": answer} if answer is not None else md


def logits_for(top: int, p: float) -> np.ndarray:
    """Logits whose softmax gives class `top` probability p and the other two (1 - p) / 2 each."""
    out = np.zeros(3)
    out[top] = math.log(p / ((1 - p) / 2))
    return out


@pytest.mark.parametrize(("top", "p", "status"), [
    (2, 0.70, "uncertain"),   # vitiligo above the abstain threshold but under its own bar: withheld
    (2, 0.79, "uncertain"),
    (2, 0.81, "ok"),
    (0, 0.70, "ok"),          # normal skin at the same confidence: answered (its bar is the abstain threshold)
    (1, 0.56, "ok"),
    (1, 0.54, "uncertain"),   # under the abstain threshold: withheld as before
])
def test_the_named_class_needs_its_own_bar(top: int, p: float, status: str) -> None:
    r = result_from_logits(logits_for(top, p), CROP, _md(answer={"vitiligo": 0.8}))
    assert r["probabilities"][NAMES[top]] == pytest.approx(p)
    assert r["status"] == status
    if status == "ok":
        assert r["answer"] == NAMES[top] and r["reason"] is None
    else:  # withheld like any unsure answer: no class given, the candidates shown as equals
        assert r["answer"] is None and r["reason"] == "low_confidence" and len(r["top_k"]) == 3
    # without the bar the same vitiligo photo is answered
    plain = result_from_logits(logits_for(top, p), CROP, _md())
    assert plain["status"] == ("ok" if p >= 0.55 else "uncertain")


def test_a_bar_below_the_abstain_threshold_or_the_floor_changes_nothing() -> None:
    assert answer_threshold(_md(0.6, {"vitiligo": 0.3}), "vitiligo") == 0.6
    assert answer_threshold(_md(0.334, {"vitiligo": 0.4}), "vitiligo") == pytest.approx(0.5)  # 3-class floor
    assert answer_threshold(_md(0.6, {"vitiligo": 0.9}), "vitiligo") == 0.9
    assert answer_threshold(_md(0.6, {"vitiligo": 0.9}), "normal_skin") == 0.6
    assert answer_threshold(_md(0.6), "vitiligo") == answer_threshold(_md(0.6, {}), "vitiligo") == 0.6


def _valid(**extra) -> dict:
    return {"format": "hypoderm-onnx/1", "class_names": NAMES, "temperature": 1.0, "abstain_threshold": 0.6,
            "input": {"size": 64, "resize_size": 73, "mean": [0.5] * 3, "std": [0.25] * 3}, **extra}


@pytest.mark.parametrize(("block", "match"), [
    ({"melanoma": 0.8}, "answer_thresholds names 'melanoma', which is not one of the classes"),
    ({"vitiligo": 1.5}, r"answer_thresholds\['vitiligo'\] must be a finite number in \[0, 1\]"),
    ({"vitiligo": "0.8"}, r"answer_thresholds\['vitiligo'\] must be a finite number"),
    ({"vitiligo": True}, r"answer_thresholds\['vitiligo'\] must be a finite number"),
    ([["vitiligo", 0.8]], "answer_thresholds must be an object"),
])
def test_a_bad_block_refuses_to_load_with_one_clear_message(block: object, match: str) -> None:
    validate_metadata(_valid(), "m.json")  # the sidecar itself is fine
    validate_metadata(_valid(answer_thresholds={"vitiligo": 0.8}), "m.json")
    with pytest.raises(ModelLoadError, match=f"m.json: {match}"):
        validate_metadata(_valid(answer_thresholds=block), "m.json")


def test_export_writes_the_bar_and_refuses_bad_flags(ckpt_path: Path, tmp_path: Path, capsys) -> None:
    import argparse

    from hypoderm.cli import main
    from hypoderm.commands.options import add_export_arguments
    from hypoderm.export import ExportError, ExportOptions, export_bundle
    from hypoderm.export.bundle import answer_thresholds
    from hypoderm.inference import OnnxPredictor, load_metadata

    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    flags = parser.parse_args(["c.pt", "--out", "m.onnx", "--answer-threshold", "a=0.8", "--answer-threshold",
                               "b=0.9"])
    assert flags.answer_threshold == ["a=0.8", "b=0.9"]
    assert answer_thresholds(flags.answer_threshold, ["a", "b"]) == {"a": 0.8, "b": 0.9}
    assert answer_thresholds(["x=y=0.7"], ["x=y", "b"]) == {"x=y": 0.7}  # a class name may hold "="
    names = list(load_checkpoint(ckpt_path)["class_names"])
    out = tmp_path / "m" / "model.onnx"
    export_bundle(ExportOptions(ckpt_path, out, no_simplify=True, answer_threshold=[f"{names[1]}=0.8"]))
    md = load_metadata(out)
    assert md["answer_thresholds"] == {names[1]: 0.8}
    assert OnnxPredictor(out).metadata["answer_thresholds"] == {names[1]: 0.8}  # the predictor reads it back
    for bad, said in [("nope=0.8", "'nope' is not a class"), (f"{names[1]}=1.5", "a probability in (0, 1]"),
                      (f"{names[1]}=0", "a probability in (0, 1]"), (f"{names[1]}=nan", "a probability"),
                      (f"{names[1]}=high", "a probability"), (names[1], "takes CLASS=P")]:
        with pytest.raises(ExportError, match=re.escape(said)):
            export_bundle(ExportOptions(ckpt_path, tmp_path / "bad" / "model.onnx", answer_threshold=[bad]))
        assert not (tmp_path / "bad" / "model.onnx").exists()  # refused before anything is written
    assert main(["export", str(ckpt_path), "--out", str(tmp_path / "c" / "model.onnx"), "--answer-threshold",
                 "nope=0.8"]) == 2
    assert "'nope' is not a class of this model" in capsys.readouterr().err


def test_the_api_and_predict_say_the_bar_and_apply_it(tmp_path: Path, capsys) -> None:
    """`/api/v1/model` gives the page the bar; `predict --json` names it and withholds the answer it holds back."""
    import torch
    from fastapi.testclient import TestClient

    from hypoderm.app.server import create_app
    from hypoderm.cli import main
    from hypoderm_testkit.app import CLASSES, build_model_dir, skin_png

    # a model sure of its first class whatever the photo: softmax([3, 0, 0]) = 0.909 for CLASSES[0]
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[3].weight.zero_()
        model[3].bias.copy_(torch.tensor([3.0, 0.0, 0.0]))
    plain = build_model_dir(tmp_path / "plain", abstain_threshold=0.4, temperature=1.0, model=model)
    (tmp_path / "photo.png").write_bytes(skin_png((160, 160)))
    assert main(["predict", str(tmp_path / "photo.png"), "--model", str(plain), "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    r0 = before["results"][0]
    assert before["model"]["answer_thresholds"] == {}
    assert r0["status"] == "ok" and r0["answer"] == CLASSES[0]
    top, p = r0["answer"], r0["top_k"][0]["probability"]
    assert p == pytest.approx(math.exp(3) / (math.exp(3) + 2))
    barred = build_model_dir(tmp_path / "barred", abstain_threshold=0.4, temperature=1.0, model=model,
                             extra={"answer_thresholds": {top: 0.95}})
    assert main(["predict", str(tmp_path / "photo.png"), "--model", str(barred), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["model"]["answer_thresholds"] == {top: 0.95}
    r1 = after["results"][0]
    assert r1["status"] == "uncertain" and r1["reason"] == "low_confidence" and r1["answer"] is None
    assert r1["top_k"][0]["probability"] == pytest.approx(p)
    info = TestClient(create_app(barred)).get("/api/v1/model").json()
    assert info["answer_thresholds"] == {top: 0.95} and info["class_names"] == CLASSES
    assert TestClient(create_app(plain)).get("/api/v1/model").json()["answer_thresholds"] == {}


def test_a_withheld_answer_names_every_candidate_whatever_top_k_is() -> None:
    """--top-k 1 on an answer the model could not choose: `top_k` holds the one class asked for, but the message
    names the three candidates as equals, never one class alone (that would be the withheld answer itself)."""
    r = result_from_logits(logits_for(2, 0.70), CROP, _md(answer={"vitiligo": 0.8}), top_k=1)
    assert r["status"] == "uncertain" and r["reason"] == "low_confidence" and len(r["top_k"]) == 1
    assert r["message"].endswith("Another skin lesion (not hypopigmented), Normal skin, Vitiligo."), r["message"]
