"""`hypoderm evaluate`: outputs, agreement with scikit-learn, class matching, skin-type groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from hypoderm.engine.config import TrainConfig
from hypoderm.engine.evaluate import EvaluateError, evaluate_checkpoint
from hypoderm.engine.train import train
from hypoderm_testkit.datasets import make_csv_manifest, make_image_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    data = make_image_folder(root / "data", per_class=8)
    cfg = TrainConfig(data=str(data), model="hypodermnet", folds=3, size=32, epochs=2, batch_size=4,
                      outlier_exposure=0.0, out=str(root / "run"), progress=False, device="cpu")
    return train(cfg) / "best.pt"


def test_evaluate_own_split_writes_outputs_equal_to_sklearn(trained: Path, tmp_path: Path) -> None:
    m = evaluate_checkpoint(trained, out=tmp_path, n_bootstrap=50)
    for name in ("metrics.json", "report.md", "confusion_matrix.png", "reliability.png", "training_curves.png",
                 "test_predictions.npz"):
        assert (tmp_path / name).is_file(), name
    for png in tmp_path.glob("*.png"):
        assert Image.open(png).format == "PNG"
    p = np.load(tmp_path / "test_predictions.npz")
    y, probs = p["y_true"], p["probs"]
    assert len(y) == m["n"] == 8  # test fold of 24 images in 3 folds
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(1)))
    assert m["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro", labels=[0, 1, 2],
                                                   zero_division=0))
    if len(set(y.tolist())) == 3:
        assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["accuracy"] == m["accuracy"] and saved["ci95"]["accuracy"][0] <= m["accuracy"]
    report = (tmp_path / "report.md").read_text()
    assert "macro-F1" in report and "not a medical device" in report


def test_val_part_is_the_next_fold(trained: Path, tmp_path: Path) -> None:
    m = evaluate_checkpoint(trained, part="val", out=tmp_path, n_bootstrap=0, plots=False)
    assert m["evaluated_on"].startswith("val fold 1 of 3")


def test_external_folder_classes_matched_by_name(trained: Path, tmp_path: Path) -> None:
    ext = make_image_folder(tmp_path / "ext", classes=("c", "a"), per_class=3, seed=5)
    m = evaluate_checkpoint(trained, data=ext, out=tmp_path / "out", n_bootstrap=0, plots=False)
    y = np.load(tmp_path / "out" / "external_predictions.npz")["y_true"]
    assert m["n"] == 6 and sorted(set(y.tolist())) == [0, 2]  # "a" -> 0, "c" -> 2 in the model's order
    assert m["per_class"]["b"]["support"] == 0


def test_external_folder_with_unknown_classes_lists_them(trained: Path, tmp_path: Path) -> None:
    ext = make_image_folder(tmp_path / "ext", classes=("a", "tinea"), per_class=2)
    with pytest.raises(EvaluateError, match=r"tinea.*\['a', 'b', 'c'\]"):
        evaluate_checkpoint(trained, data=ext, out=tmp_path / "out")


def test_metrics_per_skin_type(tmp_path: Path) -> None:
    csv = make_csv_manifest(tmp_path / "csv")
    cfg = TrainConfig(data=str(csv), model="hypodermnet", folds=3, size=32, epochs=1, batch_size=4,
                      outlier_exposure=0.0, out=str(tmp_path / "run"), progress=False, device="cpu")
    m = evaluate_checkpoint(train(cfg) / "best.pt", out=tmp_path / "eval", n_bootstrap=0, plots=False)
    groups = m["by_skin_type"]
    assert set(groups) <= {f"FST{i}" for i in range(1, 7)} and sum(g["n"] for g in groups.values()) == m["n"]
    assert "By skin type" in (tmp_path / "eval" / "report.md").read_text()


def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hypoderm.cli import main

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "hypoderm evaluate: error:" in err and "Traceback" not in err


def test_cli_prints_the_headline_and_where_the_report_is(trained: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from hypoderm.cli import main

    assert main(["evaluate", str(trained), "--out", str(tmp_path), "--bootstrap", "20", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "macro-F1" in out and f"report: {tmp_path / 'report.md'}" in out and (tmp_path / "report.md").is_file()


def test_cli_warns_about_a_collapsed_checkpoint(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 21 item 8: `train` warns and `export` refuses a checkpoint whose validation predictions collapsed to one
    class; `evaluate` says so too (stderr and the report), instead of one quiet line of metrics."""
    from hypoderm.checkpoint import load_checkpoint, save_atomic
    from hypoderm.cli import main

    ckpt = load_checkpoint(trained)
    ckpt["metrics"] = {**ckpt["metrics"], "val/predicted_counts": [len(ckpt["class_names"]) * 4, 0, 0]}
    broken = save_atomic(ckpt, tmp_path / "run" / "best.pt")
    assert main(["evaluate", str(broken), "--out", str(tmp_path / "e"), "--bootstrap", "10", "--no-plots"]) == 0
    assert "warning: this checkpoint looks broken: validation predictions collapse" in capsys.readouterr().err
    assert "looks broken" in (tmp_path / "e" / "report.md").read_text()


def test_final_checkpoint_refuses_test_metrics_on_its_training_photos(tmp_path: Path) -> None:
    """Item 7: a --final checkpoint trained on fold 0, so `evaluate` must not call fold 0 "test"."""
    data = make_image_folder(tmp_path / "data", per_class=6)
    cfg = TrainConfig(data=str(data), model="hypodermnet", folds=3, size=32, epochs=1, batch_size=4,
                      outlier_exposure=0.0, out=str(tmp_path / "run"), progress=False, device="cpu", final=True)
    best = train(cfg) / "best.pt"
    with pytest.raises(EvaluateError, match="refusing to report test metrics.*--final"):
        evaluate_checkpoint(best, out=tmp_path / "e", n_bootstrap=10, plots=False)


def test_test_fold_of_another_fold_is_refused(trained: Path, tmp_path: Path) -> None:
    """Fold 2 trained the fold-0 checkpoint: evaluating it as "test" is refused; fold 0 is fine."""
    with pytest.raises(EvaluateError, match="photos trained or selected this checkpoint"):
        evaluate_checkpoint(trained, fold=2, out=tmp_path / "e2", n_bootstrap=10, plots=False)
    with pytest.raises(EvaluateError, match="refusing"):
        evaluate_checkpoint(trained, fold=1, out=tmp_path / "e1", n_bootstrap=10, plots=False)  # fold 1 selected it
    assert evaluate_checkpoint(trained, out=tmp_path / "e0", n_bootstrap=10, plots=False)["n"] > 0


def test_external_data_overlap_is_counted_by_hash(trained: Path, tmp_path: Path, capsys) -> None:
    """`--data` photos that are copies of training photos are counted and warned about."""
    import shutil

    from hypoderm.checkpoint import load_checkpoint
    from hypoderm.cli import main
    from hypoderm.engine.evaluate import checkpoint_roles

    ckpt = load_checkpoint(trained)
    root = Path(ckpt["config"]["data"])
    trained_paths = [p for p, r in checkpoint_roles(ckpt).items() if r == "train"][:3]
    ext = make_image_folder(tmp_path / "ext", per_class=2, seed=99)
    for rel in trained_paths:
        shutil.copy(root / rel, ext / rel.split("/")[0] / ("copy_" + Path(rel).name))
    m = evaluate_checkpoint(trained, data=ext, out=tmp_path / "x", n_bootstrap=10, plots=False)
    assert m["training_overlap"]["checked"] and m["training_overlap"]["n"] == 3
    assert "byte-identical" in (tmp_path / "x" / "report.md").read_text()
    assert main(["evaluate", str(trained), "--data", str(ext), "--out", str(tmp_path / "y"), "--bootstrap", "10",
                 "--no-plots"]) == 0
    assert "warning: 3 of" in capsys.readouterr().err


def test_cli_out_that_is_a_file_is_a_usage_error(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`evaluate --out FILE` crashed with FileExistsError (exit 3); it is one line, exit 2, and the file is kept."""
    from hypoderm.cli import main

    taken = tmp_path / "report.txt"
    taken.write_text("keep me")
    assert main(["evaluate", str(trained), "--out", str(taken), "--bootstrap", "10", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder for the report" in err and "Traceback" not in err
    assert taken.read_text() == "keep me"
