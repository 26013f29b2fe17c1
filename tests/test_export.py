"""Export: ONNX parity (and its failure on mismatched preprocessing), metadata, INT8, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers_export import CLASSES, skin_image, tiny_checkpoint

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def exported(ckpt_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import export_onnx, metadata_from_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    return export_onnx(model_from_checkpoint(ckpt), metadata_from_checkpoint(ckpt),
                       tmp_path_factory.mktemp("onnx") / "model.onnx")


def _images(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [skin_image(i % 2, rng, 40 + 7 * i) for i in range(n)]


def test_export_writes_model_sidecar_and_embedded_metadata(exported: Path) -> None:
    side = json.loads(exported.with_suffix(".json").read_text())
    model = onnx.load(str(exported))
    embedded = json.loads({p.key: p.value for p in model.metadata_props}["hypoderm"])
    assert embedded == side
    assert side["format"] == "hypoderm-onnx/1" and side["class_names"] == list(CLASSES)
    assert side["input"]["size"] == 32 and side["input"]["mean"] == [0.485, 0.456, 0.406]
    assert side["ood"]["skin_fraction_min"] > 0 and "max_logit_min" in side["ood"]
    assert side["training_data"]["counts"] == {"normal_skin": 32, "vitiligo": 32}
    assert side["parity"]["max_abs_diff"] <= 1e-4
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"  # dynamic batch survived onnxslim


def test_onnx_matches_torch_on_new_images(exported: Path, ckpt_path: Path) -> None:
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import check_parity
    from hypoderm.preprocess import PreprocessSpec

    ckpt = load_checkpoint(ckpt_path)
    report = check_parity(model_from_checkpoint(ckpt), exported, _images(5, seed=7),
                          PreprocessSpec.from_dict(ckpt["preprocess"]))
    assert report["max_abs_diff"] <= 1e-4 and report["images"] == 5


def test_mismatched_preprocessing_is_caught(ckpt_path: Path, tmp_path: Path) -> None:
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import ExportParityError, export_onnx, metadata_from_checkpoint
    from hypoderm.preprocess import PreprocessSpec

    ckpt = load_checkpoint(ckpt_path)
    md = metadata_from_checkpoint(ckpt)
    md["input"]["mean"] = [0.5, 0.5, 0.5]  # the classic drift: metadata no longer matches training
    md["input"]["std"] = [0.5, 0.5, 0.5]
    with pytest.raises(ExportParityError, match="differs from the reference"):
        export_onnx(model_from_checkpoint(ckpt), md, tmp_path / "bad.onnx",
                    reference_spec=PreprocessSpec.from_dict(ckpt["preprocess"]), parity_images=_images(6, 1))
    assert not (tmp_path / "bad.onnx").exists() and not (tmp_path / "bad.json").exists()


def test_tampered_graph_is_caught(exported: Path, ckpt_path: Path, tmp_path: Path) -> None:
    import shutil

    from onnx import numpy_helper

    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import ExportParityError, check_parity
    from hypoderm.preprocess import PreprocessSpec

    model = onnx.load(str(exported))
    gemm = [n for n in model.graph.node if n.op_type == "Gemm"][-1]  # the classifier
    last = next(t for t in model.graph.initializer if t.name == gemm.input[2])  # its bias
    arr = numpy_helper.to_array(last).copy()
    arr[0] += 2.0
    last.CopyFrom(numpy_helper.from_array(arr, last.name))
    onnx.save(model, str(tmp_path / "m.onnx"))
    shutil.copy(exported.with_suffix(".json"), tmp_path / "m.json")
    ckpt = load_checkpoint(ckpt_path)
    with pytest.raises(ExportParityError):
        check_parity(model_from_checkpoint(ckpt), tmp_path / "m.onnx", _images(4, 2),
                     PreprocessSpec.from_dict(ckpt["preprocess"]))


@pytest.mark.slow
def test_int8_quantization_reports_agreement(exported: Path, tmp_path: Path) -> None:
    from hypoderm.export import agreement_report, quantize_int8
    from hypoderm.inference import OnnxPredictor
    from hypoderm.preprocess import preprocess

    calib = _images(12, seed=3)
    q = quantize_int8(exported, calib, tmp_path / "model.int8.onnx")
    md = json.loads(q.with_suffix(".json").read_text())
    assert md["precision"] == "int8" and md["quantization"]["format"] == "QDQ"
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    test_imgs = _images(10, seed=4)
    labels = [i % 2 for i in range(10)]
    rep = agreement_report(exported, q, test_imgs, labels)
    assert rep["images"] == 10 and 0.0 <= rep["top1_agreement"] <= 1.0
    fp32 = OnnxPredictor(exported)
    p32 = fp32.predict_array(np.stack([preprocess(im, fp32.spec) for im in test_imgs]))
    assert rep["fp32"]["accuracy"] == pytest.approx(float((p32.argmax(1) == np.array(labels)).mean()))
    assert set(rep["int8"]) == {"accuracy", "macro_f1"}
    assert rep["delta_points"]["macro_f1"] == pytest.approx(100 * (rep["int8"]["macro_f1"] - rep["fp32"]["macro_f1"]))


def test_bench_onnx_returns_latency(exported: Path) -> None:
    from hypoderm.export import bench_onnx

    r = bench_onnx(exported, threads=1, runs=5, warmup=1)
    assert 0 < r["median_ms"] <= r["p90_ms"] and r["threads"] == 1 and r["size"] == 32


def test_metadata_from_checkpoint_rejects_inconsistent_classes(ckpt_path: Path) -> None:
    from hypoderm.checkpoint import load_checkpoint
    from hypoderm.export import metadata_from_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    ckpt["num_classes"] = 3
    with pytest.raises(ValueError, match="num_classes=3"):
        metadata_from_checkpoint(ckpt)


@pytest.mark.slow
def test_export_cli_fp32_int8_fits_ood_and_writes_report(ckpt_path: Path, tmp_path: Path, capsys) -> None:
    from hypoderm.cli import main

    calib = tmp_path / "calib"
    rng = np.random.default_rng(5)
    for k, name in enumerate(CLASSES):
        (calib / name).mkdir(parents=True)
        for i in range(12):
            skin_image(k, rng, 48).save(calib / name / f"{i}.png")
    (calib / name / "broken.jpg").write_bytes(b"not a jpeg")  # skipped with a warning, not fatal
    out = tmp_path / "out" / "model.onnx"
    rc = main(["export", str(ckpt_path), "--out", str(out), "--int8", "--calibration", str(calib)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "parity" in captured.out and "top-1 agreement" in captured.out and "macro-F1" in captured.out
    assert "broken.jpg" in captured.err
    md = json.loads(out.with_suffix(".json").read_text())
    assert md["ood"]["fitted_on"] == 24 and md["ood"]["max_logit_min"] > -1e9
    report = json.loads((out.parent / "model.export-report.json").read_text())
    assert report["int8"]["fp32"]["accuracy"] >= 0.5 and "top1_agreement" in report["int8"]
    assert (out.parent / "model.int8.onnx").is_file()


def test_export_cli_errors_are_clear(tmp_path: Path, capsys) -> None:
    from hypoderm.cli import main

    (tmp_path / "junk.pt").write_bytes(b"garbage")
    assert main(["export", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err


def test_torchscript_export_loads_and_carries_metadata(ckpt_path: Path, tmp_path: Path) -> None:
    from hypoderm.cli import main

    out = tmp_path / "model.ts.pt"
    assert main(["export", str(ckpt_path), "--format", "torchscript", "--out", str(out)]) == 0
    extra = {"hypoderm.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    md = json.loads(extra["hypoderm.json"])
    assert md["class_names"] == list(CLASSES) and md["format_variant"] == "torchscript"
    assert loaded(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
