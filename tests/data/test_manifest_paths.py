"""Issue 28, finding 4: a manifest reads only files in or below its own folder (`../x.jpg`, `/etc/hostname` and
symbolic links leading out are refused, listed, unless --allow-outside-paths), and no path of the machine that
trained a model reaches model.json or `GET /api/v1/model`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm.data.dataset import DatasetError, load_index
from hypoderm.inference.metadata import metadata_from_checkpoint, public_metadata, public_path, redact_paths


def _png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """tmp/data/{a,b}/*.png inside, tmp/elsewhere/secret.png outside, and data/a/link.png -> that outside file."""
    root = tmp_path / "data"
    for i in range(3):
        _png(root / "a" / f"a{i}.png", i)
        _png(root / "b" / f"b{i}.png", 10 + i)
    _png(tmp_path / "elsewhere" / "secret.png", 99)
    (root / "a" / "link.png").symlink_to(tmp_path / "elsewhere" / "secret.png")
    return root


def _manifest(root: Path, extra_rows: list[str]) -> Path:
    rows = [f"{c}/{c}{i}.png,{c}" for c in "ab" for i in range(3)] + extra_rows
    path = root / "manifest.csv"
    path.write_text("path,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("row", ["../elsewhere/secret.png,a", "a/../../elsewhere/secret.png,a", "a/link.png,a",
                                 "/etc/hostname,a", "ABSOLUTE,a"])
def test_rows_outside_the_manifest_folder_are_refused_and_named(data: Path, row: str) -> None:
    row = row.replace("ABSOLUTE", str(data.parent / "elsewhere" / "secret.png"))
    csv = _manifest(data, [row])
    with pytest.raises(DatasetError, match="outside the manifest's folder") as e:
        load_index(csv)
    assert row.split(",")[0] in str(e.value) and "line 8" in str(e.value) and "--allow-outside-paths" in str(e.value)


def test_every_outside_row_is_listed_at_once(data: Path) -> None:
    csv = _manifest(data, ["../elsewhere/secret.png,a", "a/link.png,b"])
    with pytest.raises(DatasetError, match=r"2 row\(s\) point outside") as e:
        load_index(csv)
    assert "../elsewhere/secret.png (line 8)" in str(e.value) and "a/link.png (line 9)" in str(e.value)


def test_outside_rows_are_read_and_listed_when_allowed(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _manifest(data, ["../elsewhere/secret.png,a"])
    index = load_index(csv, allow_outside_paths=True)
    assert len(index) == 7 and any(s.path.name == "secret.png" for s in index.samples)
    err = capsys.readouterr().err
    assert "reading 1 file(s) outside the manifest's folder" in err and "../elsewhere/secret.png" in err


def test_rows_inside_and_symlinks_inside_still_load(data: Path) -> None:
    (data / "b" / "inner.png").symlink_to(data / "b" / "b0.png")
    (data / "c").mkdir()
    _png(data / "c" / "c0.png")
    index = load_index(_manifest(data, ["b/inner.png,b", "a/../c/c0.png,c", str(data / "c" / "c0.png") + ",c"]))
    assert len(index) == 9 and index.class_names == ["a", "b", "c"]


def test_cli_refuses_outside_rows_and_takes_the_flag(data: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    csv = _manifest(data, ["../elsewhere/secret.png,a"])
    out = tmp_path / "split.json"
    assert main(["data", "split", str(csv), "--folds", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "outside the manifest's folder" in err and "../elsewhere/secret.png" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["data", "split", str(csv), "--folds", "3", "--out", str(out), "--allow-outside-paths"]) == 0
    assert "../elsewhere/secret.png" in capsys.readouterr().err
    assert len(json.loads(out.read_text())["samples"]) == 7


@pytest.mark.parametrize("command", [["train"], ["cv"], ["compare", "--models", "tiny"], ["data", "audit"],
                                     ["data", "split"], ["evaluate", "x.pt"]])
def test_the_flag_is_offered_where_an_index_is_loaded(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    with pytest.raises(SystemExit):
        main([*command[:2 if command[0] == "data" else 1], "--help"])
    assert "--allow-outside-paths" in capsys.readouterr().out


def test_training_config_carries_the_flag_to_the_index(data: Path) -> None:
    from hypoderm.engine.config import TrainConfig
    from hypoderm.engine.fold import readable_index

    csv = _manifest(data, ["../elsewhere/secret.png,a"])
    assert TrainConfig(data=str(csv)).allow_outside_paths is False

    class NoCache:
        def get(self, path: Path) -> None:
            return None

    with pytest.raises(DatasetError, match="outside"):
        readable_index(str(csv), None, False, NoCache())  # type: ignore[arg-type]
    good, bad = readable_index(str(csv), None, False, NoCache(), allow_outside_paths=True)  # type: ignore[arg-type]
    assert len(good) == 7 and bad == []



def test_a_held_out_cv_reads_outside_rows_with_the_flag(tmp_path: Path) -> None:
    """`cv --hold-out-by origin --allow-outside-paths` (e.g. on `data lesion-free`'s manifest, which lists the
    original photos by absolute path): the run's first line reads the manifest with the flag too."""
    from hypoderm.engine.config import TrainConfig
    from hypoderm.engine.cv import first_line

    root = tmp_path / "data"
    for i in range(2):
        _png(tmp_path / "photos" / f"p{i}.png", i)
    csv = root / "manifest.csv"
    root.mkdir()
    csv.write_text("path,label,origin\n" + "".join(f"{tmp_path / 'photos' / f'p{i}.png'},a,o{i}\n" for i in range(2)))
    with pytest.raises(DatasetError, match="outside"):
        first_line(TrainConfig(data=str(csv), hold_out_by="origin"), tmp_path / "none.json")
    line = first_line(TrainConfig(data=str(csv), hold_out_by="origin", allow_outside_paths=True),
                      tmp_path / "none.json")
    assert "o0" in line and "o1" in line

# ---- no machine path in model.json or /api/v1/model ----------------------------------------------------------

ABSOLUTE = re.compile(r"(?<![\w.:/-])(/home|/root|/tmp|/etc|/work|~/|[A-Z]:\\)")


def _strings(obj: object) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def test_public_path_keeps_a_name_and_a_hash_only() -> None:
    name = public_path("/home/alice/hospital-x/data/index.csv")
    assert name.startswith("data/index.csv [sha256:") and len(name.split("sha256:")[1]) == 13
    assert name == public_path("/home/alice/hospital-x/data/index.csv")  # stable
    assert name != public_path("/home/bob/data/index.csv")
    assert public_path("/srv/photos").startswith("photos [sha256:")
    text = redact_paths("fitted at export on 12 images of /home/alice/runs/val.csv. hypoderm-gate/2 vitiligo/a.jpg")
    assert text == (f"fitted at export on 12 images of {public_path('/home/alice/runs/val.csv')}. hypoderm-gate/2 "
                    "vitiligo/a.jpg")
    assert "/home" not in text and "alice" not in text


def test_checkpoint_data_path_and_unreadable_names_do_not_reach_the_metadata(tmp_path: Path) -> None:
    from hypoderm.inference.preprocess import PreprocessSpec

    ckpt = {"model_name": "tiny", "class_names": ["a", "b"], "num_classes": 2,
            "preprocess": PreprocessSpec.for_size(64).to_dict(), "metrics": {"test/macro_f1": 0.5},
            "data_summary": {"source": "/home/alice/hospital-x/data/index.csv", "counts": {"a": 3, "b": 3},
                             "unreadable": [["/home/alice/elsewhere/jane_doe.jpg", "truncated image"]]}}
    md = metadata_from_checkpoint(ckpt)
    assert md["training_data"]["source"] == public_path("/home/alice/hospital-x/data/index.csv", resolve=True)
    assert md["training_data"]["unreadable"] == 1
    assert not [s for s in _strings(md) if "alice" in s or "jane_doe" in s]


def test_export_writes_no_machine_path(tmp_path: Path) -> None:
    from hypoderm_testkit.app import build_model_dir

    out = build_model_dir(tmp_path / "m", extra={
        "training_data": {"summary": "a: 1", "counts": {}, "source": "/home/alice/data"},
        "int8_vs_fp32": {"evaluated_on": "/home/alice/runs/val.csv"}})
    side = json.loads((out / "model.json").read_text())
    assert not [s for s in _strings(side) if ABSOLUTE.search(s)], side["training_data"]
    assert side["training_data"]["source"].startswith("data [sha256:")
    import onnx

    embedded = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}["hypoderm"]
    assert "/home/alice" not in embedded


def test_api_model_serves_no_machine_path_even_from_an_old_sidecar(model_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from hypoderm.app.server import create_app

    old = tmp_path / "old"
    old.mkdir()
    (old / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    md = json.loads((model_dir / "model.json").read_text())
    md["training_data"] = {"summary": "a: 1", "counts": {"normal_skin": 1}, "source": "/home/alice/data/index.csv",
                           "unreadable": [["/etc/hostname", "not an image file (text file)"]]}
    md["ood"]["source"] = "fitted at export on 9 images of /root/calibration"
    md["int8_vs_fp32"] = {"evaluated_on": "C:\\Users\\alice\\val.csv"}
    (old / "model.json").write_text(json.dumps(md))  # written as an old exporter did, without redaction
    r = TestClient(create_app(old)).get("/api/v1/model")
    assert r.status_code == 200
    body = r.json()
    leaks = [s for k, v in body.items() if k not in ("model_url",) for s in _strings(v) if ABSOLUTE.search(s)]
    assert leaks == []
    assert "alice" not in r.text and "/etc/hostname" not in r.text and "/root/calibration" not in r.text
    assert body["training_data"]["source"] == public_path("/home/alice/data/index.csv")
    assert body["training_data"]["counts"] == {"normal_skin": 1}  # what the page shows is untouched


def test_functional_blocks_are_never_rewritten() -> None:
    md = {"input": {"rule": "/255"}, "output": {"name": "/head/logits"}, "gradcam": {"features": "/features/x"},
          "metrics": {"note": "/home/alice/x"}}
    out = public_metadata(md)
    assert out["output"] == md["output"] and out["gradcam"] == md["gradcam"] and out["input"] == md["input"]
    assert "alice" not in out["metrics"]["note"]


def test_train_reads_outside_rows_only_with_the_flag(data: Path, tmp_path: Path) -> None:
    """`hypoderm train` (engine.fold.prepare_fold) passes TrainConfig.allow_outside_paths to the index."""
    pytest.importorskip("torch")
    from hypoderm.engine.cache import DecodedCache
    from hypoderm.engine.config import TrainConfig
    from hypoderm.engine.fold import prepare_fold
    from hypoderm.inference.preprocess import PreprocessSpec

    csv = _manifest(data, ["../elsewhere/secret.png,b"])
    cache = DecodedCache(PreprocessSpec.for_size(32))
    with pytest.raises(DatasetError, match="outside the manifest's folder"):
        prepare_fold(TrainConfig(data=str(csv), folds=3, size=32), tmp_path / "run1", cache)
    (tmp_path / "run2").mkdir()
    fold = prepare_fold(TrainConfig(data=str(csv), folds=3, size=32, allow_outside_paths=True), tmp_path / "run2",
                        cache)
    assert any(s.path.name == "secret.png" for s in fold.index.samples)
