"""Export: ONNX parity (and its failure on mismatched preprocessing), metadata, INT8, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm_testkit.export import CLASSES, export_checkpoint, skin_image, tiny_checkpoint

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def exported(ckpt_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_checkpoint(ckpt_path, tmp_path_factory.mktemp("onnx") / "model.onnx")


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
    from hypoderm.inference.preprocess import PreprocessSpec

    ckpt = load_checkpoint(ckpt_path)
    report = check_parity(model_from_checkpoint(ckpt), exported, _images(5, seed=7),
                          PreprocessSpec.from_dict(ckpt["preprocess"]))
    assert report["max_abs_diff"] <= 1e-4 and report["images"] == 5


def test_mismatched_preprocessing_is_caught(ckpt_path: Path, tmp_path: Path) -> None:
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import ExportParityError, export_onnx
    from hypoderm.inference.metadata import metadata_from_checkpoint
    from hypoderm.inference.preprocess import PreprocessSpec

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
    from hypoderm.inference.preprocess import PreprocessSpec

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
    from hypoderm.inference.preprocess import preprocess

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
    from hypoderm.inference.metadata import metadata_from_checkpoint

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
    rc = main(["export", str(ckpt_path), "--out", str(out), "--int8", "--calibration", str(calib), "--max-logit-floor"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "parity" in captured.out and "top-1 agreement" in captured.out and "macro-F1" in captured.out
    assert "broken.jpg" in captured.err
    md = json.loads(out.with_suffix(".json").read_text())
    assert md["ood"]["fitted_on"] == 24 and md["ood"]["max_logit_min"] > -1e9
    report = json.loads((out.parent / "model.export-report.json").read_text())
    assert report["int8"]["fp32"]["accuracy"] >= 0.5 and "top1_agreement" in report["int8"]
    assert (out.parent / "model.int8.onnx").is_file()
    # `hypoderm export` writes the Grad-CAM outputs that predict and serve use (the INT8 model answers only)
    # ... and the learned skin check (issue 27) of assets/skin_check.onnx, in the fp32 and the INT8 model alike
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["logits", "features", "cam_weights", "skin_score"]
    assert md["gradcam"]["cam_weights"] == "cam_weights"
    int8_md = json.loads((out.parent / "model.int8.json").read_text())
    assert "gradcam" not in int8_md
    assert md["ood"]["skin_check"] == int8_md["ood"]["skin_check"] and report["skin_check"]["file"] == "skin_check.onnx"
    assert "skin_score" in [o.name for o in onnx.load(str(out.parent / "model.int8.onnx")).graph.output]


def test_export_cli_errors_are_clear(tmp_path: Path, capsys) -> None:
    from hypoderm.cli import main

    (tmp_path / "junk.pt").write_bytes(b"garbage")
    assert main(["export", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err


def test_export_bundle_is_the_command_as_a_function(ckpt_path: Path, tmp_path: Path) -> None:
    """`export_bundle` returns the report the command writes, and its options are the command's flags."""
    import argparse

    from hypoderm.commands.options import add_export_arguments as add_arguments
    from hypoderm.export import ExportError, ExportOptions, export_bundle

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "model.onnx"
    flags = parser.parse_args([str(ckpt_path), "--out", str(out), "--no-simplify"])
    assert ExportOptions(**vars(flags)) == ExportOptions(ckpt_path, out, no_simplify=True)  # same defaults
    lines: list[str] = []
    report = export_bundle(ExportOptions(ckpt_path, out, no_simplify=True), log=lines.append, warn=lines.append)
    assert report == json.loads((tmp_path / "model.export-report.json").read_text())
    assert report["fp32"]["parity"]["max_abs_diff"] <= 1e-4 and any(line.startswith("wrote ") for line in lines)
    with pytest.raises(ExportError, match="--int8 needs --calibration") as e:
        export_bundle(ExportOptions(ckpt_path, out, int8=True))
    assert e.value.exit_code == 2


def test_torchscript_export_loads_and_carries_metadata(ckpt_path: Path, tmp_path: Path) -> None:
    from hypoderm.cli import main

    out = tmp_path / "model.ts.pt"
    assert main(["export", str(ckpt_path), "--format", "torchscript", "--out", str(out)]) == 0
    extra = {"hypoderm.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    md = json.loads(extra["hypoderm.json"])
    assert md["class_names"] == list(CLASSES) and md["format_variant"] == "torchscript"
    assert loaded(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


# ---- torch-free Grad-CAM from the exported graph (issue 12, item 4) -------------------------------------

def _export(model_name: str, tmp: Path, size: int = 96) -> tuple[object, Path]:
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import export_onnx
    from hypoderm.inference.metadata import metadata_from_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint(tmp, size=size, model_name=model_name, steps=5))
    model = model_from_checkpoint(ckpt).eval()
    return model, export_onnx(model, metadata_from_checkpoint(ckpt), tmp / f"{model_name}.onnx")


@pytest.mark.parametrize("model_name", ["mnv3s", "hypodermnet"])
def test_onnx_gradcam_equals_pytorch_grad_cam(model_name: str, tmp_path: Path) -> None:
    """The heat map from the ONNX outputs, in numpy, equals pytorch-grad-cam's GradCAM on the
    checkpoint at the last feature stage, for every class."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from hypoderm.inference import OnnxPredictor, prepare
    from hypoderm.inference.explain import gradcam_map

    model, path = _export(model_name, tmp_path)
    predictor = OnnxPredictor(path, threads=1)
    assert predictor.has_gradcam and predictor.metadata["gradcam"]["layer"] == "features"
    outputs = [o.name for o in onnx.load(str(path)).graph.output]
    assert outputs == ["logits", "features", "cam_weights"]
    reference = GradCAM(model=model, target_layers=[model.features[-1]])
    checked = 0
    for seed in range(3):
        img = skin_image(seed % 2, np.random.default_rng(seed), 120)
        features, weights = predictor.gradcam_outputs(img)
        assert features.shape[0] == weights.shape[1] and weights.shape[0] == len(CLASSES)
        _, x = prepare(img, predictor.spec)
        for k in range(len(CLASSES)):
            want = reference(input_tensor=torch.from_numpy(x[None]), targets=[ClassifierOutputTarget(k)])[0]
            got = gradcam_map(features, weights, k, *want.shape)
            assert np.abs(got - want).max() < 1e-3, (seed, k, float(np.abs(got - want).max()))
            checked += int(want.std() > 0.05)  # not a flat map: the comparison means something
    assert checked >= 2


def test_head_jacobian_matches_autograd() -> None:
    """The closed-form head Jacobian equals autograd's for each supported activation."""
    from hypoderm.export.gradcam import head_with_jacobian

    torch.manual_seed(0)
    g = torch.randn(3, 6) * 4
    for act in (torch.nn.Hardswish(), torch.nn.ReLU(), torch.nn.LeakyReLU(0.1), torch.nn.SiLU(), torch.nn.ReLU6()):
        head = [torch.nn.Linear(6, 5), act, torch.nn.Dropout(0.2).eval(), torch.nn.Linear(5, 2)]
        logits, jac = head_with_jacobian(head, g)
        net = torch.nn.Sequential(*head)
        want = torch.stack([torch.autograd.functional.jacobian(lambda v, n=net: n(v[None])[0], g[i])
                            for i in range(len(g))])
        assert torch.allclose(logits, torch.nn.Sequential(*head)(g)) and torch.allclose(jac, want, atol=1e-6), act


def test_models_without_the_structure_export_without_gradcam(tmp_path: Path) -> None:
    """A model that is not features -> pool -> Linear head still exports (no Grad-CAM outputs, a
    warning), and the predictor reports the heat map as unavailable instead of failing."""
    from hypoderm.export import export_onnx
    from hypoderm.inference import OnnxPredictor
    from hypoderm.inference.metadata import input_block
    from hypoderm.inference.preprocess import PreprocessSpec

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2))
    md = {"format": "hypoderm-onnx/1", "model_name": "plain", "version": "0", "precision": "fp32",
          "class_names": list(CLASSES), "input": input_block(PreprocessSpec.for_size(32)), "output": {"name": "logits"},
          "temperature": 1.0, "abstain_threshold": 0.5}
    with pytest.warns(UserWarning, match="without Grad-CAM outputs"):
        path = export_onnx(model, md, tmp_path / "plain.onnx")
    predictor = OnnxPredictor(path)
    assert not predictor.has_gradcam and "gradcam" not in predictor.metadata
    from hypoderm.inference import ModelLoadError

    with pytest.raises(ModelLoadError, match="re-export"):
        predictor.gradcam_outputs(skin_image(0, np.random.default_rng(0), 40))


def test_overlay_is_at_the_photo_resolution(tmp_path: Path) -> None:
    """The overlay keeps the photo's size; the heat covers the centre square the model saw."""
    from hypoderm.inference import OnnxPredictor
    from hypoderm.inference.explain import crop_box, overlay_on_photo

    _, path = _export("mnv3s", tmp_path)
    predictor = OnnxPredictor(path, threads=1)
    img = skin_image(1, np.random.default_rng(3), 300).crop((0, 0, 300, 200))
    features, weights = predictor.gradcam_outputs(img)
    out = overlay_on_photo(img, features, weights, 1, predictor.spec)
    assert out.size == (300, 200)
    left, top, w, h = crop_box(300, 200, predictor.spec)
    assert w == pytest.approx(h, rel=0.02) and h == pytest.approx(200, rel=0.02)  # all of the centre square
    assert left == pytest.approx((300 - w) / 2, abs=2) and top == pytest.approx((200 - h) / 2, abs=2)
    photo, drawn = np.asarray(img, float), np.asarray(out, float)
    edge = int(left) - 1  # left of the square: the photo, dimmed (the model did not see it)
    assert np.allclose(drawn[:, :edge], np.round(photo[:, :edge] * 0.45), atol=1)
    rows, cols = slice(int(top) + 2, int(top + h) - 2), slice(int(left) + 2, int(left + w) - 2)
    assert not np.allclose(drawn[rows, cols], np.round(photo[rows, cols] * 0.45), atol=1)  # the heat is drawn


def test_export_calibration_accepts_a_csv_manifest(ckpt_path: Path, tmp_path: Path, capsys) -> None:
    """Item 9: `--calibration` takes the same CSV manifest as `train` (it used to say "not a folder")."""
    from hypoderm.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(2)
    rows = ["path,label"]
    for i in range(8):
        skin_image(i % 2, rng, 48).save(photos / f"p{i}.png")
        rows.append(f"photos/p{i}.png,{CLASSES[i % 2]}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out" / "model.onnx"
    rc = main(["export", str(ckpt_path), "--out", str(out), "--calibration", str(manifest)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    md = json.loads(out.with_suffix(".json").read_text())
    assert md["parity"]["images"] == 8 and md["ood"]["fitted_on"] == 8 and "manifest.csv" in md["ood"]["source"]
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert main(["export", str(ckpt_path), "--out", str(out), "--calibration", str(notes)]) == 2
    assert "neither a folder nor a .csv manifest" in capsys.readouterr().err


def test_export_refuses_a_broken_checkpoint_unless_forced(tmp_path: Path, capsys) -> None:
    """Item 8: a collapsed model is refused; with --force it is exported and marked, and predict says so."""
    from hypoderm.cli import main
    from hypoderm_testkit.export import train_tiny_checkpoint

    metrics = {"val/macro_f1": 0.235, "val/predicted_counts": [0, 62], "val/temperature": 20.0}
    broken = train_tiny_checkpoint(tmp_path / "broken.pt", steps=2, metrics=metrics, temperature=20.0,
                                   abstain_threshold=0.5)
    out = tmp_path / "out" / "model.onnx"
    assert main(["export", str(broken), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "refusing to export" in err and "collapse to one class" in err and "--force" in err and not out.exists()
    assert main(["export", str(broken), "--out", str(out), "--force"]) == 0
    md = json.loads(out.with_suffix(".json").read_text())
    assert md["quality"]["forced"] is True
    assert [p["code"] for p in md["quality"]["problems"]] == ["collapsed", "chance_f1", "temperature_bound"]
    capsys.readouterr()
    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(0), 48).save(img)
    assert main(["predict", str(img), "--model", str(out)]) == 0
    assert capsys.readouterr().out.startswith("WARNING: this model failed its quality checks")
    assert main(["predict", str(img), "--model", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["model"]["problems"]) == 3 and doc["notes"][0].startswith("WARNING")


def test_export_leaves_the_max_logit_floor_off_unless_asked(ckpt_path: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from hypoderm.cli import main
    from hypoderm.inference import load_metadata
    from hypoderm.inference.ood import ood_check

    on = tmp_path / "floor.onnx"  # asked for, but nothing to fit it on: said so, and left permissive
    assert main(["export", str(ckpt_path), "--out", str(on), "--max-logit-floor", "--no-simplify"]) == 0
    assert "--max-logit-floor has no floor to apply" in capsys.readouterr().err
    assert "max_logit_floor" not in load_metadata(on)["ood"]
    out = tmp_path / "nofloor.onnx"
    assert main(["export", str(ckpt_path), "--out", str(out), "--no-simplify"]) == 0  # the default: off
    md = load_metadata(out)
    assert md["ood"]["max_logit_floor"].startswith("off") and md["ood"]["max_logit_min"] <= -1e8
    assert md["ood"]["gate"] is not None  # the image gate stays on
    skin = np.full((64, 64, 3), (200, 150, 120), np.uint8)
    # a very low max logit no longer rejects anything by itself
    assert ood_check(skin, np.array([-50.0, -60.0]), md["ood"])["max_logit"] == -50.0


@pytest.fixture(scope="module")
def exported_eca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny hypodermnet (first conv, depthwise convs, ECA gates, Gemm head), exported with Grad-CAM outputs."""
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import export_onnx
    from hypoderm.inference.metadata import metadata_from_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("ckpt_eca"), model_name="hypodermnet",
                                           recalibrate_bn=True))
    return export_onnx(model_from_checkpoint(ckpt), metadata_from_checkpoint(ckpt),
                       tmp_path_factory.mktemp("onnx_eca") / "model.onnx")


def _weight_is_quantized(model: object, node: object) -> bool:
    """True when the node's weight input comes from a DequantizeLinear (QDQ) rather than an fp32 initializer."""
    producers = {o: n for n in model.graph.node for o in n.output}
    src = producers.get(node.input[1])
    return src is not None and src.op_type == "DequantizeLinear"


@pytest.mark.slow
def test_sensitive_nodes_finds_each_layer_group(exported_eca: Path) -> None:
    from hypoderm.export.int8 import sensitive_nodes

    graph = onnx.load(str(exported_eca)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    init = {t.name: list(t.dims) for t in graph.initializer}
    assert sensitive_nodes(exported_eca, ["first_conv"]) == [convs[0].name]
    dw = sensitive_nodes(exported_eca, ["depthwise"])
    assert dw and all(init[n.input[1]][1] == 1 and n.name != convs[0].name for n in convs if n.name in dw)
    eca = sensitive_nodes(exported_eca, ["eca"])
    ops = {n.name: n.op_type for n in graph.node}
    eca_convs = [n for n in eca if ops[n] == "Conv"]
    assert eca_convs and all(len(init[n.input[1]]) == 3 for n in convs if n.name in eca_convs)
    assert {ops[n] for n in eca} == {"Conv", "Sigmoid", "Mul"} and len(eca) == 3 * len(eca_convs)
    assert {ops[n] for n in sensitive_nodes(exported_eca, ["head"])} <= {"Gemm", "MatMul"}
    with pytest.raises(ValueError, match="unknown layer group"):
        sensitive_nodes(exported_eca, ["stem"])


@pytest.mark.slow
def test_int8_settings_are_applied(exported_eca: Path, tmp_path: Path) -> None:
    from hypoderm.export.int8 import quantize_int8, sensitive_nodes

    calib = _images(8, seed=3)
    kept = quantize_int8(exported_eca, calib, tmp_path / "kept.onnx", method="percentile",
                         keep_fp32=("first_conv", "depthwise"))
    md = json.loads(kept.with_suffix(".json").read_text())["quantization"]
    assert md["calibration"] == "percentile" and md["fp32_layer_groups"] == ["first_conv", "depthwise"]
    model = onnx.load(str(kept))
    names_fp32 = set(sensitive_nodes(exported_eca, ["first_conv", "depthwise"]))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(not _weight_is_quantized(model, n) for n in convs if n.name in names_fp32)
    assert any(_weight_is_quantized(model, n) for n in convs if n.name not in names_fp32)  # the 1x1 convs are INT8
    qop = quantize_int8(exported_eca, calib, tmp_path / "qop.onnx", quant_format="qoperator", per_channel=False)
    ops = {n.op_type for n in onnx.load(str(qop)).graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops
    assert json.loads(qop.with_suffix(".json").read_text())["quantization"]["format"] == "QOperator"
    scales = [t for t in onnx.load(str(qop)).graph.initializer if t.name.endswith("_scale")]
    assert scales and all(len(t.dims) == 0 or t.dims == [1] for t in scales)  # per-tensor: one scale per tensor
    with pytest.raises(ValueError, match="unknown calibration method"):
        quantize_int8(exported_eca, calib, tmp_path / "x.onnx", method="kl")
    with pytest.raises(ValueError, match="unknown quantisation format"):
        quantize_int8(exported_eca, calib, tmp_path / "x.onnx", quant_format="qlinear")


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_tiny_model_and_report_has_fields(exported_eca: Path, tmp_path: Path) -> None:
    """The report's numbers are those of the two models run here, and INT8 agrees with fp32 as far as static INT8
    of a 15-step model does.

    Issue 29: this test once failed (max_abs_prob_diff 0.996 against a bound of 0.5), and it failed every time when
    run alone with OMP_NUM_THREADS=1. Why: (1) the tiny model was trained on as many torch threads as the process
    had when the module's fixture first ran (2 when it was the first to import torch, 1 after conftest's
    _one_torch_thread), and the thread count changes a convolution gradient's float sums, so the weights, and the
    INT8 rounding with them, depended on which tests ran before; (2) its BatchNorm statistics, averaged over 15
    batches while the weights moved, gave eval logits up to +-108, far outside what the 16 calibration images
    cover; (3) a bound on the largest probability change is not something static INT8 guarantees: with recomputed
    statistics, over 14 seeds of this model, it ranged 0.17-0.96 (agreement 0.83-1.00, mean change 0.02-0.13).
    Now training runs on one thread (testkit: train_tiny_checkpoint, one model per seed), the statistics are
    recomputed, and the bounds are those every seed met."""
    from hypoderm.export.int8 import agreement_report, model_inputs, quantize_int8
    from hypoderm.inference import OnnxPredictor

    q = quantize_int8(exported_eca, _images(16, seed=3), tmp_path / "q.onnx")
    spec = OnnxPredictor(exported_eca).spec
    photos = _images(20, seed=4)
    arrays = list(model_inputs(_images(10, seed=5), spec))  # preprocessed inputs (e.g. close-ups) are taken as is
    labels = [i % 2 for i in range(20)] + [i % 2 for i in range(10)]
    rep = agreement_report(exported_eca, q, photos + arrays, labels, ["photo"] * 20 + ["closeup"] * 10)
    x = model_inputs(photos + arrays, spec)
    p32, p8 = OnnxPredictor(exported_eca).predict_array(x), OnnxPredictor(q).predict_array(x)
    assert rep["top1_agreement"] == pytest.approx(float((p32.argmax(1) == p8.argmax(1)).mean()))
    assert rep["max_abs_prob_diff"] == pytest.approx(float(np.abs(p32 - p8).max()), abs=1e-6)
    assert rep["images"] == 30 and rep["top1_agreement"] >= 0.8
    assert 0 <= rep["mean_abs_prob_diff"] <= 0.2 and rep["mean_abs_prob_diff"] <= rep["max_abs_prob_diff"] <= 1
    assert set(rep["by_view"]) == {"photo", "closeup"}
    assert rep["by_view"]["photo"]["images"] == 20 and rep["by_view"]["closeup"]["images"] == 10
    for r in (rep, *rep["by_view"].values()):
        assert set(r["fp32"]) == set(r["int8"]) == {"accuracy", "macro_f1"}
        assert r["delta_points"]["macro_f1"] == pytest.approx(100 * (r["int8"]["macro_f1"] - r["fp32"]["macro_f1"]))
    with pytest.raises(ValueError, match="preprocessed array must be float32"):
        agreement_report(exported_eca, q, [np.zeros((3, 8, 8), np.float32)])
    with pytest.raises(ValueError, match="view names for"):
        agreement_report(exported_eca, q, photos, None, ["photo"])


def calib_and_held_folders(root: Path, seed: int, per_class: int) -> None:
    """root/calib and root/held: `per_class` synthetic 48 px skin images per class in class folders."""
    rng = np.random.default_rng(seed)
    for folder in ("calib", "held"):
        for k, name in enumerate(CLASSES):
            (root / folder / name).mkdir(parents=True)
            for i in range(per_class):
                skin_image(k, rng, 48).save(root / folder / name / f"{i}.png")


def export_with_images(ckpt_path: Path, tmp_path: Path, capsys, seed: int, per_class: int, closeups: int,
                       *flags: str) -> tuple[Path, pytest.CaptureFixture]:
    """`hypoderm export CKPT --out tmp/out/model.onnx FLAGS --calibration tmp/calib --eval tmp/held`, which must
    succeed: (the fp32 model's path, what it printed)."""
    from hypoderm.cli import main

    calib_and_held_folders(tmp_path, seed=seed, per_class=per_class)
    out = tmp_path / "out" / "model.onnx"
    rc = main(["export", str(ckpt_path), "--out", str(out), *flags, "--calibration", str(tmp_path / "calib"),
               "--eval", str(tmp_path / "held"), "--eval-closeups", str(closeups)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return out, captured


@pytest.mark.slow
def test_export_cli_int8_closeup_report(ckpt_path: Path, tmp_path: Path, capsys) -> None:
    """`--int8` uses the measured settings (DEFAULT_SETTINGS; other settings are the sweep benchmark's) and
    compares with fp32 on held-out photos and their close-ups."""
    from hypoderm.cli import main
    from hypoderm.export.int8 import DEFAULT_SETTINGS

    out, captured = export_with_images(ckpt_path, tmp_path, capsys, 6, 6, 2, "--int8")
    report = json.loads((out.parent / "model.export-report.json").read_text())["int8"]
    assert report["settings"]["calibration"] == DEFAULT_SETTINGS["method"]
    assert report["settings"]["format"] == DEFAULT_SETTINGS["quant_format"].upper()
    assert report["held_out"] is True and report["images"] == 12 + 24
    assert report["by_view"]["photo"]["images"] == 12 and report["by_view"]["closeup"]["images"] == 24
    assert {"top1_agreement", "fp32", "int8", "delta_points", "bytes", "fp32_bytes"} <= set(report)
    assert "closeup: top-1 agreement" in captured.out and "macro-F1 fp32" in captured.out
    with pytest.raises(SystemExit):  # the tuning flags are the sweep benchmark's, not the command's
        main(["export", str(ckpt_path), "--out", str(out), "--int8-method", "entropy"])
    capsys.readouterr()
    rc = main(["export", str(ckpt_path), "--out", str(out), "--int8", "--calibration", str(tmp_path / "calib"),
               "--eval", str(tmp_path / "calib"), "--eval-closeups", "0"])
    assert rc == 0 and "12 of the --eval images are also --calibration images" in capsys.readouterr().err
    report = json.loads((out.parent / "model.export-report.json").read_text())["int8"]
    assert report["held_out"] is False and set(report["by_view"]) == {"photo"} and report["images"] == 12


@pytest.mark.slow
def test_int8_keeps_gradcam_outputs_sharing_the_int8_head_weight(exported_eca: Path, tmp_path: Path) -> None:
    from hypoderm.export.int8 import agreement_report, quantize_int8
    from hypoderm.inference import OnnxPredictor

    q = quantize_int8(exported_eca, _images(12, seed=3), tmp_path / "cam.onnx", keep_gradcam=True)
    model = onnx.load(str(q))
    assert [o.name for o in model.graph.output] == ["logits", "features", "cam_weights"]
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert matmul.input[1] == gemm.input[1] and _weight_is_quantized(model, gemm)  # one INT8 copy of the weight
    fp32_dims = {tuple(t.dims) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    head_dims = tuple(next(t.dims for t in onnx.load(str(exported_eca)).graph.initializer if t.name == "head.0.weight"))
    assert head_dims not in fp32_dims
    assert json.loads(q.with_suffix(".json").read_text())["gradcam"]["cam_weights"] == "cam_weights"
    assert OnnxPredictor(q).has_gradcam
    rep = agreement_report(exported_eca, q, _images(6, seed=4))
    assert 0.5 < rep["gradcam_correlation"]["mean"] <= 1.0 + 1e-9
    answers_only = quantize_int8(exported_eca, _images(12, seed=3), tmp_path / "plain.onnx")
    assert [o.name for o in onnx.load(str(answers_only)).graph.output] == ["logits"]
    assert "gradcam_correlation" not in agreement_report(exported_eca, answers_only, _images(6, seed=4))


def _rounded_weights_fp32(fp32: Path, int8w: Path, out: Path) -> Path:
    """`fp32` with each weight replaced by the INT8 model's dequantised copy (numpy): the model the
    INT8-weights session must compute once its DequantizeLinear nodes are folded."""
    from onnx import numpy_helper

    q = onnx.load(str(int8w))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    deq = {}
    for n in q.graph.node:
        if n.op_type == "DequantizeLinear":
            w, s = inits[n.input[0]], inits[n.input[1]]
            shape = [1] * w.ndim
            shape[next(a.i for a in n.attribute if a.name == "axis")] = -1
            deq[n.output[0]] = w.astype(np.float32) * s.reshape(shape)
    model = onnx.load(str(fp32))
    for i, t in enumerate(model.graph.initializer):
        if t.name in deq:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(deq[t.name], t.name))
    onnx.save(model, str(out))
    out.with_suffix(".json").write_text(fp32.with_suffix(".json").read_text())
    return out


def test_weight_only_int8_stores_int8_weights_and_computes_in_fp32(exported_eca: Path, tmp_path: Path) -> None:
    from onnx import numpy_helper

    from hypoderm.export.int8 import model_inputs, quantize_weights_int8
    from hypoderm.inference import OnnxPredictor

    q = quantize_weights_int8(exported_eca, tmp_path / "model.int8w.onnx")
    model, fp32 = onnx.load(str(q)), onnx.load(str(exported_eca))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" not in ops and ops.count("DequantizeLinear") > 0  # activations are never quantised
    inits = {t.name: t for t in model.graph.initializer}
    weighted = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert weighted and all(_weight_is_quantized(model, n) for n in weighted)
    for n in (n for n in model.graph.node if n.op_type == "DequantizeLinear"):
        assert inits[n.input[0]].data_type == onnx.TensorProto.INT8
        assert not numpy_helper.to_array(inits[n.input[2]]).any()  # symmetric: zero point 0
    # the head weight read by the Gemm and by the Grad-CAM MatMul is stored once
    assert [n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"].count("head.0.weight") == 1
    assert "head.0.weight" not in inits
    assert [o.name for o in model.graph.output] == [o.name for o in fp32.graph.output]
    fp32_weights = {t.name: numpy_helper.to_array(t) for t in fp32.graph.initializer}
    for n in (n for n in model.graph.node if n.op_type == "DequantizeLinear"):
        w = fp32_weights[n.output[0]]
        axis = next(a.i for a in n.attribute if a.name == "axis")
        shape = [1] * w.ndim
        shape[axis] = -1
        scale = numpy_helper.to_array(inits[n.input[1]]).reshape(shape)
        err = np.abs(numpy_helper.to_array(inits[n.input[0]]) * scale - w)
        assert (err <= scale / 2 + 1e-7).all()  # round to nearest: at most half a step per weight, per channel
    md = json.loads(q.with_suffix(".json").read_text())
    assert md["precision"] == "int8-weights" and md["quantization"]["activations"] == "fp32"
    assert md["quantization"]["session_config"] == {"session.disable_quant_qdq": "1"}
    assert md["class_names"] == list(CLASSES) and md["gradcam"]["cam_weights"] == "cam_weights"
    # Once loaded it computes exactly the fp32 graph with the rounded weights (same kernels, float order):
    rounded = _rounded_weights_fp32(exported_eca, q, tmp_path / "rounded.onnx")
    w8, r32, f32 = OnnxPredictor(q), OnnxPredictor(rounded), OnnxPredictor(exported_eca)
    x = model_inputs(_images(12, seed=8), f32.spec)
    np.testing.assert_allclose(w8.predict_logits(x), r32.predict_logits(x), rtol=0, atol=1e-5)
    # The rounding itself (<= half a step, 1/254 of a channel's largest weight) keeps the answers. No tighter
    # bound holds for this 15-step network, whose barely trained layers amplify any weight change (logits move
    # up to ~1); the trained bundled model keeps all 248 held-out answers (benchmarks/export/README.md).
    assert (w8.predict_logits(x).argmax(1) == f32.predict_logits(x).argmax(1)).mean() >= 11 / 12
    assert w8.has_gradcam


def test_weight_only_int8_is_dequantised_when_the_session_is_created(exported_eca: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from hypoderm.export.int8 import quantize_weights_int8
    from hypoderm.inference import OnnxPredictor
    from hypoderm.inference.metadata import DEQUANTIZE_AT_LOAD

    q = quantize_weights_int8(exported_eca, tmp_path / "model.int8w.onnx")

    def optimised_ops(path: Path, config: dict[str, str]) -> list[str]:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable graph to save
        opts.optimized_model_filepath = str(tmp_path / f"opt-{path.stem}-{len(config)}.onnx")
        for k, v in config.items():
            opts.add_session_config_entry(k, v)
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]

    assert "DequantizeLinear" in optimised_ops(q, {})  # by default ORT keeps them (and runs them every call)
    folded = optimised_ops(q, DEQUANTIZE_AT_LOAD)
    # folded: the session runs the nodes the fp32 model gets (independent ones may be listed in another order),
    # hence fp32's speed
    assert "DequantizeLinear" not in folded and sorted(folded) == sorted(optimised_ops(exported_eca, {}))
    # OnnxPredictor sets the entry from the metadata's precision, and only there: static QDQ INT8 models
    # need ORT's QDQ fusions, which the entry switches off
    assert OnnxPredictor(q).session.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    with pytest.raises(Exception, match="does not have configuration"):
        OnnxPredictor(exported_eca).session.get_session_options().get_session_config_entry("session.disable_quant_qdq")
    from hypoderm.export.latency import ort_cpu_session  # the timing sessions (hypoderm bench) do the same

    assert ort_cpu_session(q).get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    with pytest.raises(Exception, match="does not have configuration"):
        ort_cpu_session(q, session_config={}).get_session_options().get_session_config_entry(
            "session.disable_quant_qdq")


def test_weight_only_int8_refuses_a_model_without_weights(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from hypoderm.export.int8 import quantize_weights_int8
    from hypoderm.inference.metadata import input_block, write_metadata
    from hypoderm.inference.preprocess import PreprocessSpec

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 16, 16])
    for opset in (17, 11):
        path = tmp_path / f"plain{opset}.onnx"
        onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g", [x], [y]),
                                    opset_imports=[helper.make_opsetid("", opset)]), str(path))
        write_metadata(path, {"format": "hypoderm-onnx/1", "model_name": "plain", "version": "0", "precision": "fp32",
                              "class_names": list(CLASSES), "input": input_block(PreprocessSpec.for_size(16)),
                              "temperature": 1.0, "abstain_threshold": 0.5})
    with pytest.raises(ValueError, match="no fp32 Conv / Gemm / MatMul weight"):
        quantize_weights_int8(tmp_path / "plain17.onnx", tmp_path / "out.onnx")
    with pytest.raises(ValueError, match="needs opset >= 13, the model has 11"):
        quantize_weights_int8(tmp_path / "plain11.onnx", tmp_path / "out.onnx")


@pytest.mark.slow
def test_export_cli_int8_weights_writes_the_model_and_its_report(ckpt_path: Path, tmp_path: Path, capsys) -> None:
    from hypoderm.cli import main

    out, captured = export_with_images(ckpt_path, tmp_path, capsys, 9, 4, 1, "--int8-weights")
    assert "INT8 weights only" in captured.out and "closeup: top-1 agreement" in captured.out
    assert not (out.parent / "model.int8.onnx").exists()  # only the weight-only model was asked for
    report = json.loads((out.parent / "model.export-report.json").read_text())["int8_weights"]
    assert report["path"] == str(out.parent / "model.int8w.onnx") and report["bytes"] < report["fp32_bytes"] / 2
    assert report["held_out"] is True and report["images"] == 8 + 8 and report["top1_agreement"] >= 0.9
    assert report["settings"]["weights"] == "int8 per-channel symmetric"
    md = json.loads((out.parent / "model.int8w.json").read_text())
    assert md["precision"] == "int8-weights" and md["int8_vs_fp32"]["images"] == 16
    assert md["ood"] == json.loads(out.with_suffix(".json").read_text())["ood"]  # same gate and thresholds as fp32
    bare = tmp_path / "bare" / "model.onnx"  # no images at all: the model is written, the comparison skipped
    assert main(["export", str(ckpt_path), "--out", str(bare), "--int8-weights"]) == 0
    assert "is not compared with fp32" in capsys.readouterr().err
    assert (bare.parent / "model.int8w.onnx").is_file()
    bare_report = json.loads((bare.parent / "model.export-report.json").read_text())["int8_weights"]
    assert bare_report["path"] == str(bare.parent / "model.int8w.onnx") and "top1_agreement" not in bare_report


def test_framed_square_is_seen_whole_and_its_overlay_has_no_dimmed_frame(tmp_path: Path) -> None:
    """Issues 21 and 29: a square (framed in the app, or a square photo given to predict or the API) is seen whole:
    resized to resize_size, then straight to the input size (no centre crop), so the heat map covers all of it and
    `framed` changes nothing (one rule); a whole photo's centre square is what the model sees of it."""
    from hypoderm.inference import OnnxPredictor, prepare
    from hypoderm.inference.explain import crop_box

    _, path = _export("mnv3s", tmp_path)
    predictor = OnnxPredictor(path, threads=1)
    spec = predictor.spec
    assert spec.resize_size != spec.size  # both resizes of the rule are exercised
    img = skin_image(1, np.random.default_rng(3), 300)
    assert crop_box(300, 300, spec, framed=True) == crop_box(300, 300, spec) == (0, 0, 300, 300)
    crop, _ = prepare(img, spec, framed=True)
    step = img.resize((spec.resize_size, spec.resize_size), Image.Resampling.BILINEAR, reducing_gap=None)
    whole = np.asarray(step.resize((spec.size, spec.size), Image.Resampling.BILINEAR, reducing_gap=None))
    assert np.array_equal(crop, whole) and np.array_equal(crop, prepare(img, spec)[0])
    features, weights = predictor.gradcam_outputs(img, framed=True)
    out = np.asarray(predictor.gradcam_overlay(img, 1, framed=True), float)
    dimmed = np.isclose(out, np.round(np.asarray(img, float) * 0.45), atol=1).all(axis=-1)
    assert dimmed.mean() < 0.05  # the heat is drawn everywhere (a pixel may match by chance)
    assert np.array_equal(features, predictor.gradcam_outputs(img)[0])  # the same input either way
    # a photo that is not square: its centre square, framed or not
    left, top, w, h = crop_box(300, 200, spec, framed=True)
    assert crop_box(300, 200, spec) == (left, top, w, h)
    assert (left, top, w, h) == pytest.approx((50, 0, 200, 200), abs=1)


def test_a_capped_image_set_keeps_every_class(tmp_path: Path) -> None:
    """--max-images on a list sorted by class: an even spread, not the first N (which would be one class)."""
    from hypoderm.export.bundle import _load_images

    files, labels = [], []
    for k in range(2):
        for i in range(6):
            f = tmp_path / f"{k}_{i}.png"
            skin_image(k, np.random.default_rng(i), 32).save(f)
            files.append(f)
            labels.append(k)
    images, kept_labels, kept_files = _load_images(files, labels, 4)
    assert len(images) == 4 and sorted(kept_labels or []) == [0, 0, 1, 1]
    assert len(set(kept_files)) == 4
    assert len(_load_images(files, labels, 100)[0]) == 12  # fewer files than the cap: all of them


def test_export_without_the_skin_check_leaves_it_out(ckpt_path: Path, tmp_path: Path) -> None:
    """`--no-skin-check`: the model keeps its own outputs only, and the statistics gate alone refuses non-skin."""
    from hypoderm.export import ExportOptions, export_bundle
    from hypoderm.inference import OnnxPredictor, load_metadata

    out = tmp_path / "plain" / "model.onnx"
    report = export_bundle(ExportOptions(ckpt_path, out, no_skin_check=True))
    assert "skin_check" not in report and "skin_check" not in (load_metadata(out).get("ood") or {})
    assert "skin_score" not in [o.name for o in onnx.load(str(out)).graph.output]
    assert OnnxPredictor(out).skin_name is None


def test_an_old_opset_or_a_wrong_suffix_is_a_usage_error(ckpt_path: Path, tmp_path: Path) -> None:
    """`export --opset 12` crashed with a ValueError (exit 3, "hypoderm crashed"); it is a usage error, found before
    anything is written."""
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.errors import UsageError
    from hypoderm.export.onnx import export_onnx_checked

    model = model_from_checkpoint(load_checkpoint(ckpt_path))
    with pytest.raises(UsageError, match=r"--opset must be >= 17 .*got 12"):
        export_onnx_checked(model, {}, tmp_path / "m.onnx", opset=12)
    with pytest.raises(UsageError, match=r"--out must end in \.onnx"):
        export_onnx_checked(model, {}, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
