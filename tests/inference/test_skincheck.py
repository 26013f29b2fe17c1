"""The learned skin check (issue 27): part of the model's graph, read by the predictor and the page alike.

A tiny stand-in check (mean colour of the ImageNet-normalised input, red minus blue) makes every score
computable by hand, so the tests need neither the shipped check nor ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm.inference import ModelLoadError, OnnxPredictor, load_metadata
from hypoderm.inference.ood import default_gate, ood_check
from hypoderm.inference.preprocess import square_uint8
from hypoderm.inference.skincheck import FORMAT, OUTPUT, skin_check_reason, validate_skin_check
from hypoderm_testkit.export import TINY_CHECK_BIAS, TINY_CHECK_WEIGHTS
from hypoderm_testkit.export import tiny_skin_check as tiny_check

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
WEIGHTS = np.array(TINY_CHECK_WEIGHTS)  # the stand-in: 4 * (mean R - mean B) of the ImageNet-normalised input
BIAS = TINY_CHECK_BIAS


def hand_score(crop: np.ndarray) -> float:
    x = (crop.astype(np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return float(x.reshape(-1, 3).mean(0) @ WEIGHTS + BIAS)


def block(threshold: float = -1.0, answer: float = 0.0) -> dict:
    return {"format": FORMAT, "output": OUTPUT, "threshold": threshold, "answer_threshold": answer}


def photo(rgb: tuple[int, int, int], size: int = 96, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(rgb) + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


@pytest.fixture
def checked_model(model_dir: Path, tmp_path: Path) -> Path:
    from hypoderm.export.skincheck import attach

    return attach(model_dir / "model.onnx", tiny_check(tmp_path / "check.onnx"), block(),
                  out_path=tmp_path / "model.onnx")


def test_attach_adds_the_output_and_the_block_and_the_predictor_reads_it(checked_model: Path) -> None:
    import onnx

    outputs = [o.name for o in onnx.load(str(checked_model)).graph.output]
    assert outputs[0] == "logits" and OUTPUT in outputs
    md = load_metadata(checked_model)
    assert md["ood"]["skin_check"] == block()
    assert json.loads(checked_model.with_suffix(".json").read_text())["ood"]["skin_check"] == block()
    p = OnnxPredictor(checked_model)
    for rgb in ((200, 150, 120), (40, 90, 220)):
        img = photo(rgb)
        got = p.predict_image(img)["ood"]["skin_score"]
        assert got == pytest.approx(hand_score(square_uint8(img, p.spec)), abs=1e-4)


def test_attach_twice_replaces_the_check(checked_model: Path, tmp_path: Path) -> None:
    import onnx

    from hypoderm.export.skincheck import attach

    attach(checked_model, tiny_check(tmp_path / "again.onnx"), block(-2.0, -1.0))
    graph = onnx.load(str(checked_model)).graph
    assert [o.name for o in graph.output].count(OUTPUT) == 1
    assert load_metadata(checked_model)["ood"]["skin_check"]["threshold"] == -2.0
    OnnxPredictor(checked_model)  # still loads and runs


def test_a_model_with_another_normalisation_feeds_the_check_imagenet_input(model_dir: Path, tmp_path: Path) -> None:
    from hypoderm.export.skincheck import attach
    from hypoderm.inference.metadata import write_metadata

    md = load_metadata(model_dir / "model.onnx")
    md["input"] = {**md["input"], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    write_metadata(tmp_path / "model.onnx", md, source=model_dir / "model.onnx")
    attach(tmp_path / "model.onnx", tiny_check(tmp_path / "check.onnx"), block())
    p = OnnxPredictor(tmp_path / "model.onnx")
    img = photo((180, 120, 100), seed=3)
    assert p.predict_image(img)["ood"]["skin_score"] == pytest.approx(hand_score(square_uint8(img, p.spec)), abs=1e-4)


def test_the_check_sees_its_own_input_size_on_a_model_of_another_size(model_dir: Path, tmp_path: Path) -> None:
    """A check fitted at 24 px on a 64 px model: the graph resizes the input as PyTorch's bilinear interpolation
    (half-pixel centres, no antialiasing) would, so the score is the check's score of the 24 px image."""
    import onnx
    import torch

    from hypoderm.export.skincheck import attach

    attach(model_dir / "model.onnx", tiny_check(tmp_path / "check.onnx"), {**block(), "input_size": 24},
           out_path=tmp_path / "model.onnx")
    assert "Resize" in [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    p = OnnxPredictor(tmp_path / "model.onnx")
    assert p.spec.size == 64
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (90, 90, 3)).astype(np.uint8)
    arr[:, ::3, 0] = 255  # stripes: the resized image's mean colour differs from the full one's
    img = Image.fromarray(arr)
    crop = square_uint8(img, p.spec)
    x = torch.from_numpy(((crop / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].copy())
    small = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    want = float(small[0].mean(dim=(1, 2)).numpy() @ WEIGHTS + BIAS)
    got = p.predict_image(img)["ood"]["skin_score"]
    assert got == pytest.approx(want, abs=1e-4)
    assert abs(want - hand_score(crop)) > 1e-2  # without the resize the score would differ
    attach(tmp_path / "model.onnx", tiny_check(tmp_path / "check.onnx"), {**block(), "input_size": 64})
    assert "Resize" not in [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]  # replaced


def test_scores_below_the_thresholds_refuse_or_withhold(checked_model: Path, tmp_path: Path) -> None:
    """The same photo, three pairs of thresholds around its score: refused, withheld, passed."""
    from hypoderm.inference.metadata import write_metadata

    img = photo((200, 150, 120))
    score = OnnxPredictor(checked_model).predict_image(img)["ood"]["skin_score"]
    seen = {}
    for name, (t, a) in {"refused": (score + 1, score + 2), "withheld": (score - 1, score + 1),
                         "passed": (score - 2, score - 1)}.items():
        md = load_metadata(checked_model)
        md["ood"] = {**md["ood"], "skin_check": block(t, a)}
        write_metadata(checked_model, md)
        r = OnnxPredictor(checked_model).predict_image(img)
        seen[name] = (r["status"], r["ood"]["reason"])
    assert seen["refused"] == ("not_skin", "not_skin_like")
    assert seen["withheld"] == ("uncertain", "unsure_skin")
    assert seen["passed"][1] not in ("not_skin_like", "unsure_skin")


def _stats_refuse() -> dict:
    """An ood block whose statistics gate refuses every crop (its threshold above any score)."""
    return {"skin_fraction_min": 0.0, "max_logit_min": -1e9, "gate": {**default_gate(), "threshold": 1e5,
                                                                        "answer_threshold": 1e5}}


def test_a_photo_the_check_passes_is_withheld_not_refused_by_the_statistics() -> None:
    crop = np.asarray(photo((200, 150, 120), size=128), np.uint8)
    logits = np.array([2.0, 0.0, 0.0])
    ood = {**_stats_refuse(), "skin_check": block(-1.0, 0.0)}
    assert ood_check(crop, logits, _stats_refuse())["reason"] == "not_skin_like"  # no check: refused
    assert ood_check(crop, logits, ood, skin_score=5.0)["reason"] == "unsure_skin"  # the check passes it
    assert ood_check(crop, logits, ood, skin_score=-0.5)["reason"] == "not_skin_like"  # the check doubts it too
    assert ood_check(crop, logits, ood, skin_score=-3.0)["reason"] == "not_skin_like"
    assert ood_check(crop, logits, ood, skin_score=None)["reason"] == "not_skin_like"  # a model without the output


def test_skin_check_reason_and_validation() -> None:
    b = block(-1.0, 0.5)
    assert [skin_check_reason(s, b) for s in (-2.0, 0.0, 1.0, float("nan"))] == \
        ["not_skin_like", "unsure_skin", None, "not_skin_like"]
    assert skin_check_reason(-5.0, None) is None
    for bad, field in (({**b, "format": "x"}, "format"), ({**b, "output": ""}, "output"),
                       ({**b, "threshold": float("inf")}, "threshold"), ({**b, "answer_threshold": "1"}, "answer"),
                       ({**b, "answer_threshold": -3.0}, "answer_threshold"), ([], "object"),
                       ({**b, "input_size": 8}, "input_size"), ({**b, "input_size": 128.5}, "input_size"),
                       ({**b, "input_size": True}, "input_size")):
        with pytest.raises(ValueError, match=field):
            validate_skin_check(bad)


def test_a_block_naming_an_output_the_graph_lacks_is_refused_at_load(model_dir: Path, tmp_path: Path) -> None:
    from hypoderm.inference.metadata import write_metadata

    md = load_metadata(model_dir / "model.onnx")
    md["ood"] = {**(md.get("ood") or {}), "skin_check": block()}
    write_metadata(tmp_path / "model.onnx", md, source=model_dir / "model.onnx")
    with pytest.raises(ModelLoadError, match="ood.skin_check.output 'skin_score'.*not an output"):
        OnnxPredictor(tmp_path / "model.onnx")
    md["ood"]["skin_check"] = {**block(), "threshold": float("nan")}
    with pytest.raises(ModelLoadError, match="skin_check.threshold"):
        write_metadata(tmp_path / "model.onnx", md, source=model_dir / "model.onnx")


def test_shipped_check_block_is_valid_when_present() -> None:
    from hypoderm.export.skincheck import shipped_skin_check

    shipped = shipped_skin_check()
    if shipped is None:
        pytest.skip("this checkout ships no skin check")
    onnx_file, b = shipped
    validate_skin_check(b)
    assert onnx_file.stat().st_size < 1_500_000  # issue 27: at most 1.5 MB more to the first load
    assert b["imagenet_weights"]["sha256"] and "/" not in b["imagenet_weights"]["file"]
