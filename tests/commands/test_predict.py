"""`hypoderm predict`: per-file outcomes on a mixed folder, the JSON schema, verdicts, Grad-CAM,
and the torch-free ONNX path (a subprocess in which `import torch` raises)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hypoderm.cards import display_name
from hypoderm_testkit.export import export_checkpoint, non_skin_pictures, skin_image

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "predict.schema.json"


@pytest.fixture(scope="module")
def onnx_path(ckpt_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # colour rule only: the not-skin gate is fitted for photos, and this tiny 32 px model's crude synthetic
    # "skin" squares sit on its boundary (the gate has its own tests: test_ood.py, test_nonskin.py)
    return export_checkpoint(ckpt_path, tmp_path_factory.mktemp("onnx") / "model.onnx",
                             ood={"skin_fraction_min": 0.05, "max_logit_min": -1e9, "gate": None})


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    skin_image(1, np.random.default_rng(0), 80).save(folder / "good.png")
    non_skin_pictures()["blue_green_shapes"].save(folder / "drawing.png")
    jpeg = folder / "full.jpg"
    skin_image(0, np.random.default_rng(1), 80).save(jpeg, quality=90)
    (folder / "corrupt.jpg").write_bytes(jpeg.read_bytes()[:300])
    jpeg.unlink()
    (folder / "notes.txt").write_text("patient notes, not an image\n")
    return folder


def _run_json(args: list[str], capsys) -> tuple[int, dict]:
    from hypoderm.cli import main

    rc = main(["predict", *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def _validate(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


def test_mixed_folder_gives_per_file_outcomes_and_valid_json(onnx_path: Path, mixed_folder: Path, capsys) -> None:
    rc, doc = _run_json([str(mixed_folder), "--model", str(onnx_path)], capsys)
    _validate(doc)
    by_name = {Path(r["file"]).name: r for r in doc["results"]}
    assert set(by_name) == {"good.png", "drawing.png", "corrupt.jpg"}  # notes.txt is no photo: skipped, counted
    assert by_name["good.png"]["status"] in ("ok", "uncertain") and by_name["good.png"]["ood"]["is_skin"]
    assert by_name["drawing.png"]["status"] == "not_skin"
    assert by_name["corrupt.jpg"]["status"] == "error" and by_name["corrupt.jpg"]["reason"] == "truncated"
    assert "skipped 1 file(s) in the folders that are not images: notes.txt" in doc["notes"]
    assert rc == 1  # some files could not be read; the others were still processed
    probs = by_name["good.png"]["probabilities"]
    assert sum(probs.values()) == pytest.approx(1.0)
    assert [t["label"] for t in by_name["good.png"]["top_k"]] == sorted(probs, key=probs.get, reverse=True)


def test_a_data_folder_is_predicted_without_its_documents(onnx_path: Path, tmp_path: Path, capsys) -> None:
    """Issue 21 item 10: a dataset folder with its MANIFEST.md and manifest.csv gives exit 0: documents beside the
    photos are skipped and counted; an image is recognised by its bytes whatever its name; a document named on
    the command line, or a damaged photo, is still an error."""
    folder = tmp_path / "data" / "normal_skin"
    folder.mkdir(parents=True)
    skin_image(0, np.random.default_rng(5), 96).save(folder / "a.png")
    skin_image(0, np.random.default_rng(6), 96).save(folder / "IMG_0001", format="JPEG")  # no extension
    (tmp_path / "data" / "MANIFEST.md").write_text("# Sources\n")
    (tmp_path / "data" / "manifest.csv").write_text("path,label\nnormal_skin/a.png,normal_skin\n")
    rc, doc = _run_json([str(tmp_path / "data"), "--model", str(onnx_path)], capsys)
    assert rc == 0, doc
    assert sorted(Path(r["file"]).name for r in doc["results"]) == ["IMG_0001", "a.png"]
    assert all(r["status"] != "error" for r in doc["results"])
    assert "skipped 2 file(s) in the folders that are not images: MANIFEST.md, manifest.csv" in doc["notes"]
    rc, doc = _run_json([str(tmp_path / "data" / "MANIFEST.md"), "--model", str(onnx_path)], capsys)
    assert rc == 1 and doc["results"][0]["reason"] == "not_image"  # named by the user: an error, not a skip
    from hypoderm.cli import main

    assert main(["predict", str(tmp_path / "data"), "--model", str(onnx_path)]) == 0
    assert "skipped 2 file(s) in the folders that are not images" in capsys.readouterr().out


def test_abstain_threshold_gives_uncertain_verdict(onnx_path: Path, tmp_path: Path, capsys) -> None:
    import shutil

    img = tmp_path / "skin.png"
    skin_image(0, np.random.default_rng(3), 80).save(img)
    for threshold, expected in ((0.0, "ok"), (0.999999, "uncertain")):
        model = tmp_path / f"m{expected}" / "model.onnx"
        model.parent.mkdir()
        shutil.copy(onnx_path, model)
        md = json.loads(onnx_path.with_suffix(".json").read_text())
        model.with_suffix(".json").write_text(json.dumps({**md, "abstain_threshold": threshold}))
        rc, doc = _run_json([str(img), "--model", str(model), "--top-k", "1"], capsys)
        r = doc["results"][0]
        assert rc == 0 and r["status"] == expected and len(r["top_k"]) == 1
        if expected == "uncertain":  # no class is the answer: what to do, candidates as equals
            assert r["answer"] is None and "see a dermatologist" in r["message"]
            assert all(w in r["message"] for w in ("closer", "daylight", "centred", "all equally"))
            # --top-k 1 lists one class, but the candidates of a withheld answer are never fewer than three
            names = [display_name(c) for c in md["class_names"]]
            assert all(n in r["message"].split("all equally")[1] for n in names[:3]), r["message"]
            assert "%" not in r["message"] and "normal_skin" not in r["message"]
        else:
            assert r["answer"] == r["top_k"][0]["label"]


@pytest.mark.slow
def test_checkpoint_model_matches_onnx_and_writes_gradcam(ckpt_path: Path, onnx_path: Path, tmp_path: Path,
                                                          capsys) -> None:
    from PIL import Image

    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(4), 80).save(img)
    rc, doc_pt = _run_json([str(img), "--model", str(ckpt_path), "--cam", str(tmp_path / "cams")], capsys)
    _validate(doc_pt)
    cam = Path(doc_pt["results"][0]["cam"])
    assert rc == 0 and cam.is_file()
    with Image.open(cam) as im:
        assert im.format == "PNG" and im.size == (80, 80)  # the photo's resolution, not the model's 32 px
    _, doc_onnx = _run_json([str(img), "--model", str(onnx_path)], capsys)
    p_pt, p_onnx = doc_pt["results"][0]["probabilities"], doc_onnx["results"][0]["probabilities"]
    assert max(abs(p_pt[k] - p_onnx[k]) for k in p_pt) < 1e-4


def test_cam_with_onnx_is_torch_free_and_matches_the_checkpoint(onnx_path: Path, ckpt_path: Path, tmp_path: Path,
                                                              capsys) -> None:
    """`--cam` with the ONNX model alone writes the overlay at the photo's resolution; the checkpoint
    gives the same picture (one Grad-CAM definition)."""
    from PIL import Image

    img = tmp_path / "skin.png"
    # label 1: pale patches on skin (a plain skin-toned square is a wall to the not-skin gate)
    skin_image(1, np.random.default_rng(5), 90).crop((0, 0, 90, 70)).save(img)
    rc, doc = _run_json([str(img), "--model", str(onnx_path), "--cam", str(tmp_path / "c1")], capsys)
    _validate(doc)
    assert rc == 0 and doc["notes"] == [] and Path(doc["results"][0]["cam"]).is_file()
    rc, doc_pt = _run_json([str(img), "--model", str(ckpt_path), "--cam", str(tmp_path / "c2")], capsys)
    with Image.open(doc["results"][0]["cam"]) as a, Image.open(doc_pt["results"][0]["cam"]) as b:
        assert a.size == b.size == (90, 70)
        assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 2


def test_cam_with_an_old_onnx_says_why(onnx_path: Path, tmp_path: Path, capsys) -> None:
    """An ONNX file exported before the Grad-CAM outputs still predicts; `--cam` explains what to do."""
    import onnx.utils

    old = tmp_path / "old" / "model.onnx"
    old.parent.mkdir()
    onnx.utils.extract_model(str(onnx_path), str(old), ["input"], ["logits"])
    md = json.loads(onnx_path.with_suffix(".json").read_text())
    md.pop("gradcam")
    old.with_suffix(".json").write_text(json.dumps(md))
    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(5), 90).save(img)  # passes the not-skin gate
    rc, doc = _run_json([str(img), "--model", str(old), "--cam", str(tmp_path / "c1")], capsys)
    _validate(doc)
    assert rc == 0 and doc["results"][0]["status"] in ("ok", "uncertain") and doc["results"][0]["cam"] is None
    assert "re-export it with `hypoderm export`" in doc["notes"][0]


def test_model_errors_are_clear(tmp_path: Path, monkeypatch, capsys) -> None:
    from hypoderm.cli import main
    from hypoderm.inference import model_path

    img = tmp_path / "a.png"
    skin_image(0, np.random.default_rng(0), 40).save(img)
    monkeypatch.setattr(model_path, "bundled_model", lambda: tmp_path / "assets" / "model.onnx")
    assert main(["predict", str(img)]) == 2
    assert "bundled model is missing" in capsys.readouterr().err
    (tmp_path / "m.onnx").write_bytes(b"junk")
    assert main(["predict", str(img), "--model", str(tmp_path / "m.onnx")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["predict", str(img), "--model", str(img)]) == 2
    assert "a.png is not a .onnx, .pt or .pth file (expected a model.onnx" in capsys.readouterr().err


BLOCK_TORCH = textwrap.dedent('''
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this process (hypoderm test)")
            return None

    sys.meta_path.insert(0, _NoTorch())
''')


def test_onnx_predict_runs_with_torch_blocked(onnx_path: Path, mixed_folder: Path, tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")])}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "torch is blocked" in probe.stderr  # the blocker works
    proc = subprocess.run([sys.executable, "-m", "hypoderm.cli", "predict", str(mixed_folder), "--model",
                           str(onnx_path), "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # 1: a file is unreadable, by design
    doc = json.loads(proc.stdout)
    _validate(doc)
    status = {Path(r["file"]).name: r["status"] for r in doc["results"]}
    assert status["corrupt.jpg"] == "error" and status["drawing.png"] == "not_skin"
    # a text file beside the photos is skipped and said so, not an error
    assert "notes.txt" not in status and any("not images: notes.txt" in n for n in doc["notes"])
    assert status["good.png"] in ("ok", "uncertain")
    assert "torch" not in proc.stderr.lower()


def test_text_output_lists_every_file(onnx_path: Path, mixed_folder: Path, capsys) -> None:
    from hypoderm.cli import main

    assert main(["predict", str(mixed_folder), str(mixed_folder / "missing.png"), "--model", str(onnx_path)]) == 1
    out = capsys.readouterr().out
    assert "drawing.png: not_skin" in out and "missing.png: ERROR: file not found" in out
    assert "notes.txt: ERROR" not in out and "skipped 1 file(s) in the folders that are not images: notes.txt" in out
    assert "not a medical device" in out
    # people read display names, never identifiers, and honest percentages
    assert "normal_skin" not in out and "100%" not in out
    drawing = next(line for line in out.splitlines() if line.startswith(str(mixed_folder / "drawing.png")))
    assert "Not analysed" in drawing and "Normal skin" not in drawing and "Vitiligo" not in drawing
    # after the answers: what the model cannot tell, and the examinations that can
    good = out.split(str(mixed_folder / "good.png"))[1]
    assert "This model knows only Normal skin and Vitiligo" in good
    for words in ("Tinea (pityriasis) versicolor", "Leprosy", "KOH microscopy", "Wood's lamp", "sensation testing",
                  "biopsy"):
        assert words in out, words


def test_not_skin_json_presents_no_class(onnx_path: Path, mixed_folder: Path, capsys) -> None:
    """A rejected photo keeps its raw numbers for research but gives no class: empty top_k, no answer."""
    rc, doc = _run_json([str(mixed_folder / "drawing.png"), "--model", str(onnx_path)], capsys)
    _validate(doc)
    r = doc["results"][0]
    assert r["status"] == "not_skin" and r["top_k"] == [] and r["answer"] is None and r["cam"] is None
    assert sum(r["probabilities"].values()) == pytest.approx(1.0)
    assert "Not analysed" in r["message"] and "Normal skin" not in r["message"] and "Vitiligo" not in r["message"]


def test_schema_rejects_a_class_for_not_skin(onnx_path: Path, mixed_folder: Path, capsys) -> None:
    """The schema itself forbids a class answer for a rejected or uncertain photo."""
    jsonschema = pytest.importorskip("jsonschema")
    _, doc = _run_json([str(mixed_folder / "drawing.png"), "--model", str(onnx_path)], capsys)
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["top_k"] = [{"label": "normal_skin", "probability": 0.96}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(SCHEMA.read_text()))
    bad["results"][0]["top_k"], bad["results"][0]["answer"] = [], "normal_skin"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize(("p", "text"), [(0.9996, ">99%"), (0.99949, ">99%"), (0.995, ">99%"), (0.99, "99%"),
                                         (0.705, "70%"), (0.5, "50%"), (0.004, "<1%"), (0.0, "<1%"), (1.0, ">99%")])
def test_format_probability_is_honest(p: float, text: str) -> None:
    from hypoderm.cards import format_probability

    assert format_probability(p) == text


def test_format_probability_never_says_certain() -> None:
    from hypoderm.cards import format_probability

    for p in np.linspace(0, 1, 100_001):
        s = format_probability(p)
        assert s not in ("100%", "0%"), p


def test_limits_come_from_the_class_list() -> None:
    """A 2-class model lists every look-alike; a model trained on more classes says less."""
    from hypoderm.cards import display_name, limits_text, load_cards, model_limits

    two = model_limits(["normal_skin", "vitiligo"])
    assert two["known"] == ["Normal skin", "Vitiligo"]
    ids = [u["id"] for u in two["unknown"]]
    assert "vitiligo" not in ids and {"tinea_versicolor", "leprosy", "pityriasis_alba"} <= set(ids)
    assert all(u["exam"] for u in two["unknown"])
    more = model_limits(["normal_skin", "vitiligo", "tinea_versicolor", "leprosy"])
    assert [u["id"] for u in more["unknown"]] == [i for i in ids if i not in ("tinea_versicolor", "leprosy")]
    everything = [cid for cid in load_cards()]
    assert model_limits(everything)["unknown"] == []
    assert "cannot tell Vitiligo from look-alikes" in limits_text(["normal_skin", "vitiligo"], "vitiligo")
    assert "does not rule out" in limits_text(["normal_skin", "vitiligo"], "normal_skin")
    assert model_limits(["normal_skin", "vitiligo"], "zh")["known"] == ["正常皮肤", "白癜风"]
    assert display_name("some_new_class") == "Some new class"


def test_model_folder_is_accepted_like_serve(onnx_path: Path, tmp_path: Path, capsys) -> None:
    """Issue 21 item 9: `serve --model DIR` takes the folder `hypoderm export` wrote; so does `predict`."""
    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(5), 90).save(img)
    rc, doc = _run_json([str(img), "--model", str(onnx_path.parent)], capsys)
    assert rc == 0 and doc["model"]["path"] == str(onnx_path) and doc["results"][0]["status"] != "error"
    from hypoderm.cli import main

    assert main(["predict", str(img), "--model", str(tmp_path)]) == 2  # a folder without model.onnx
    err = capsys.readouterr().err
    assert f"model not found: {tmp_path / 'model.onnx'} (the folder {tmp_path} holds no model.onnx" in err


def test_a_broken_checkpoint_is_said(ckpt_path: Path, tmp_path: Path, capsys) -> None:
    """Issue 21 item 8: a .pt checkpoint whose validation predictions collapsed gets the warning an exported
    model marked broken gets (text and JSON), instead of confident-looking answers."""
    from hypoderm.checkpoint import load_checkpoint, save_atomic
    from hypoderm.cli import main

    ckpt = load_checkpoint(ckpt_path)
    ckpt["metrics"] = {**ckpt["metrics"], "val/predicted_counts": [12, 0]}
    broken = save_atomic(ckpt, tmp_path / "best.pt")
    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(5), 90).save(img)
    assert main(["predict", str(img), "--model", str(broken)]) == 0
    assert capsys.readouterr().out.startswith("WARNING: this model failed its quality checks (validation predictions")
    rc, doc = _run_json([str(img), "--model", str(broken)], capsys)
    assert [p["code"] for p in doc["model"]["problems"]] == ["collapsed"] and "WARNING" in doc["notes"][0]
    rc, doc = _run_json([str(img), "--model", str(ckpt_path)], capsys)
    assert doc["model"]["problems"] == [] and doc["notes"] == []  # a sound checkpoint gets no warning


def test_help_says_what_cam_needs(capsys) -> None:
    """Issue 21 item 11: `--cam` works with the bundled ONNX model (its Grad-CAM outputs); the help says so."""
    from hypoderm.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "needs the checkpoint" not in out and "the bundled model and `hypoderm export` models have them" in out


def test_other_lesion_is_answered_by_its_card_never_as_a_named_lesion(tmp_path: Path, capsys) -> None:
    """Issue 19 item 4 (CLI): a model with the class other_lesion answers it as "a skin lesion that is not a
    hypopigmented condition this model knows: have it examined", in the text and the JSON message, naming no
    lesion; the conditions it cannot tell are still listed."""

    from hypoderm.cli import main

    model_dir = _sure_of(tmp_path, "other_lesion")
    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(5), 90).save(img)
    assert main(["predict", str(img), "--model", str(model_dir)]) == 0
    answer = capsys.readouterr().out.split("\n")[0]
    said = "A skin lesion that is not a hypopigmented condition this model knows (90%): have it examined by a doctor."
    assert answer == f"{img}: ok: {said} (others: Normal skin 5%, Vitiligo 5%)"
    rc, doc = _run_json([str(img), "--model", str(model_dir)], capsys)
    result = doc["results"][0]
    assert result["answer"] == "other_lesion" and result["message"].startswith(said)
    for named in ("cancer", "carcinoma", "melanoma", "mole", "keratos"):
        assert named not in answer.lower() and named not in result["message"].lower()


def _with_threshold(onnx_path: Path, folder: Path, threshold: float, temperature: float = 1.0) -> Path:
    """The test model with another abstain threshold (and temperature) in its sidecar."""
    import shutil

    model = folder / "model.onnx"
    model.parent.mkdir(parents=True)
    shutil.copy(onnx_path, model)
    md = json.loads(onnx_path.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**md, "abstain_threshold": threshold,
                                                      "temperature": temperature}))
    return model


def test_cam_is_written_only_for_an_answer(onnx_path: Path, mixed_folder: Path, tmp_path: Path, capsys) -> None:
    """Issue 29: `--cam` writes a heat map next to an answer (ok) only, as the app shows one; an uncertain or a
    refused photo gets none (its `cam` is null), as an uncertain answer names no class. Uncertain here: temperature
    100 flattens the probabilities and a threshold of 1 is above every one of them."""
    for threshold, temperature, status in ((0.0, 0.01, "ok"), (1.0, 100.0, "uncertain")):
        model = _with_threshold(onnx_path, tmp_path / status, threshold, temperature)
        cams = tmp_path / f"cams-{status}"
        rc, doc = _run_json([str(mixed_folder), "--model", str(model), "--cam", str(cams)], capsys)
        _validate(doc)
        by_name = {Path(r["file"]).name: r for r in doc["results"]}
        assert by_name["good.png"]["status"] == status and by_name["drawing.png"]["status"] == "not_skin"
        assert by_name["drawing.png"]["cam"] is None
        written = sorted(p.name for p in cams.glob("*.png")) if cams.exists() else []
        if status == "ok":
            assert by_name["good.png"]["cam"] is not None and written == ["good.cam.png"]
        else:
            assert by_name["good.png"]["cam"] is None and written == []


def test_limits_are_printed_once_per_run(onnx_path: Path, tmp_path: Path, capsys) -> None:
    """Issue 29: `predict` on a folder says the model's limits once, after the answers, not under every photo."""
    from hypoderm.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        skin_image(1, np.random.default_rng(10 + i), 80).save(folder / f"p{i}.png")
    for threshold, temperature in ((0.0, 1.0), (0.5, 100.0)):  # every photo answered, then (at chance) none
        model = _with_threshold(onnx_path, tmp_path / f"m{threshold}", threshold, temperature)
        assert main(["predict", str(folder), "--model", str(model)]) == 0
        out = capsys.readouterr().out
        assert sum(line.startswith(str(folder)) for line in out.splitlines()) == 4
        assert out.count("This model knows only") == 1 and "Limits:" not in out
        assert out.count("Leprosy (Hansen's disease):") == 1  # the examinations, once
        last_answer = max(out.index(str(folder / f"p{i}.png")) for i in range(4))
        assert out.index("This model knows only") > last_answer


def test_limits_label_names_the_one_answer_of_the_run() -> None:
    from hypoderm.inference.files import limits_label

    ok = {"status": "ok", "answer": "vitiligo"}
    assert limits_label([ok, ok, {"status": "uncertain", "answer": None}]) == "vitiligo"
    assert limits_label([ok, {"status": "ok", "answer": "normal_skin"}]) is None
    assert limits_label([{"status": "not_skin", "answer": None}]) is None


def test_normal_skin_answer_carries_its_look_alike_caveat(tmp_path: Path, capsys) -> None:
    """Issue 29: pityriasis alba, nevus depigmentosus and halo nevus were answered "normal skin" on clinical photos;
    a "Normal skin" answer says so, in the text, in the JSON message, and in the card the page words it by (en, zh)."""

    from hypoderm.cards import answer_text
    from hypoderm.cli import main

    model_dir = _sure_of(tmp_path, "normal_skin")
    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(5), 90).save(img)
    assert main(["predict", str(img), "--model", str(model_dir)]) == 0
    answer = capsys.readouterr().out.split("\n")[0]
    assert answer.startswith(f"{img}: ok: Most likely: Normal skin (90%)")
    for words in ("pityriasis alba", "nevus depigmentosus", "halo nevus", "does not rule out"):
        assert words in answer, words
    rc, doc = _run_json([str(img), "--model", str(model_dir)], capsys)
    assert doc["results"][0]["answer"] == "normal_skin" and "halo nevus" in doc["results"][0]["message"]
    zh = answer_text("normal_skin", 0.9, "zh")
    assert zh.startswith("在本模型认识的类别中，最可能是：正常皮肤（90%）")
    assert all(w in zh for w in ("白色糠疹", "无色素痣", "晕痣"))
    assert "halo nevus" not in answer_text("vitiligo", 0.9)  # the caveat belongs to the normal answer only


def test_a_vitiligo_answer_is_hedged_as_on_the_page(tmp_path: Path, capsys) -> None:
    """The CLI printed "Vitiligo 90%" and the API "Vitiligo (90%).", while the page says "Most likely: Vitiligo
    (90%), of the classes this model knows." (messages.json status_ok): the riskiest answer was the one without a
    hedge outside the page. All three now say the page's words, in both languages."""
    from hypoderm.cards import answer_text
    from hypoderm.cli import main

    model_dir = _sure_of(tmp_path, "vitiligo")
    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(5), 90).save(img)
    assert main(["predict", str(img), "--model", str(model_dir)]) == 0
    said = "Most likely: Vitiligo (90%), of the classes this model knows."
    assert capsys.readouterr().out.split("\n")[0].startswith(f"{img}: ok: {said} (others: ")
    rc, doc = _run_json([str(img), "--model", str(model_dir)], capsys)
    assert doc["results"][0]["answer"] == "vitiligo" and doc["results"][0]["message"].startswith(said)
    assert answer_text("vitiligo", 0.9, "zh") == "在本模型认识的类别中，最可能是：白癜风（90%）。"


def _sure_of(tmp_path: Path, label: str) -> Path:
    """A 3-class model (normal_skin, other_lesion, vitiligo) that gives `label` 0.9 whatever the photo."""
    import torch

    from hypoderm_testkit.app import build_model_dir

    classes = ["normal_skin", "other_lesion", "vitiligo"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        model[-1].weight.zero_()
        model[-1].bias.zero_()
        model[-1].bias[classes.index(label)] = float(np.log(18.0))  # 18 / (18 + 1 + 1) = 0.9
    return build_model_dir(tmp_path / "m", classes=classes, temperature=1.0, abstain_threshold=0.6, model=model)


def test_cam_comes_from_the_run_that_gives_the_answer(onnx_path: Path, tmp_path: Path) -> None:
    """Issue 30: with `--cam` each photo is preprocessed once and the model run once (the logits and the Grad-CAM
    outputs together, as the server does), not once for the answer and again for the heat map; the answer and the
    heat map are the same as from two separate runs."""
    from PIL import Image

    from hypoderm.inference import OnnxPredictor, load_image
    from hypoderm.inference.files import predict_files

    model = _with_threshold(onnx_path, tmp_path / "ok", 0.0, 0.01)  # sure of its top class: an answer (ok)
    photo = tmp_path / "good.png"
    skin_image(1, np.random.default_rng(0), 80).save(photo)
    predictor = OnnxPredictor(model, threads=1)
    img = load_image(photo)
    alone = predictor.predict_image(img)
    assert alone["status"] == "ok"
    top = predictor.class_names.index(alone["top_k"][0]["label"])
    want = np.asarray(predictor.gradcam_overlay(img, top))  # the heat map of a run of its own

    runs: list[list[str]] = []

    class CountingSession:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def run(self, names: list[str], feed: dict) -> list:
            runs.append(list(names))
            return self.inner.run(names, feed)  # type: ignore[attr-defined]

    predictor.session = CountingSession(predictor.session)  # type: ignore[assignment]
    (r,) = predict_files(predictor, [photo], cam_dir=tmp_path / "cams")
    assert len(runs) == 1 and {predictor.logits_name, *predictor.cam_names} <= set(runs[0])
    assert {k: v for k, v in r.items() if k not in ("file", "cam")} == alone
    with Image.open(r["cam"]) as written:
        assert np.array_equal(np.asarray(written), want)
    runs.clear()
    predict_files(predictor, [photo])  # without --cam: one run, no Grad-CAM outputs asked for
    assert len(runs) == 1 and not set(predictor.cam_names) & set(runs[0])


EMPTY_PATHS = [["predict", ""], ["predict", "  "], ["predict", "photo.jpg", "--model", ""],
               ["predict", "photo.jpg", "--cam", ""], ["export", "", "--out", "m.onnx"], ["bench", "--onnx-file", ""],
               ["train", "--data", ""], ["train", "--data", "photos", "--out", ""],
               ["cv", "--data", "photos", "--split", " "], ["evaluate", ""], ["data", "audit", ""],
               ["data", "split", ""], ["data", "lesion-free", "", "--out", "o"], ["serve", "--model", ""]]


@pytest.mark.parametrize("argv", EMPTY_PATHS)
def test_an_empty_path_is_a_usage_error_not_the_current_folder(argv: list[str], tmp_path: Path, capsys,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`hypoderm predict "$PHOTO"` with PHOTO unset gave Path("") = the current folder: every image under it was
    predicted (or, in an empty folder, nothing, with exit 0); `train --data ""` made runs/ before it failed. Every
    path option of every command now gives argparse's usage error (exit 2) saying why, and writes nothing."""
    from hypoderm.cli import main

    monkeypatch.chdir(tmp_path)
    skin_image(0, np.random.default_rng(0), 96).save(tmp_path / "photo.jpg")
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "empty path (an unset shell variable?)" in err and "usage: hypoderm" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]  # nothing written



def test_folders_without_images_are_a_usage_error_not_an_empty_success(tmp_path: Path, onnx_path: Path,
                                                                       capsys) -> None:
    """`predict` on an empty folder (or one holding only a README) printed the disclaimer alone and exited 0: a
    script could not tell it from a run that found nothing wrong. It is a usage error (exit 2) that says so."""
    from hypoderm.cli import main

    empty, notes = tmp_path / "empty", tmp_path / "notes"
    empty.mkdir()
    notes.mkdir()
    (notes / "README.md").write_text("photos go here\n")
    for folders, said in (([empty], "no images found in"), ([empty, notes], "skipped 1 file(s)")):
        assert main(["predict", *map(str, folders), "--model", str(onnx_path)]) == 2
        captured = capsys.readouterr()
        assert "hypoderm predict: error:" in captured.err and said in captured.err and str(empty) in captured.err
        assert captured.out == ""
    # one photo beside the empty folder is a normal run
    skin_image(0, np.random.default_rng(0), 96).save(notes / "photo.png")
    rc, doc = _run_json([str(empty), str(notes), "--model", str(onnx_path)], capsys)
    assert rc == 0 and [Path(r["file"]).name for r in doc["results"]] == ["photo.png"]


@pytest.mark.parametrize("cam_kind", ["a file", "under a file"])
def test_a_cam_folder_that_cannot_be_made_is_one_usage_error(cam_kind: str, tmp_path: Path, onnx_path: Path,
                                                             capsys) -> None:
    """--cam naming a file (or a folder under one) failed under every photo with a Python exception's text and exit
    0; it is now one usage error before any photo is run."""
    from hypoderm.cli import main

    photo, blocker = tmp_path / "photo.png", tmp_path / "taken.jpg"
    skin_image(0, np.random.default_rng(0), 96).save(photo)
    blocker.write_bytes(b"x")
    cam = blocker if cam_kind == "a file" else blocker / "cams"
    assert main(["predict", str(photo), "--model", str(onnx_path), "--cam", str(cam)]) == 2
    captured = capsys.readouterr()
    assert f"hypoderm predict: error: --cam {cam}:" in captured.err and "Errno" not in captured.err
    assert captured.out == "" and blocker.read_bytes() == b"x"


def test_threads_below_one_is_a_usage_error(tmp_path: Path, onnx_path: Path, capsys) -> None:
    from hypoderm.cli import main

    photo = tmp_path / "photo.png"
    skin_image(0, np.random.default_rng(0), 96).save(photo)
    assert main(["predict", str(photo), "--model", str(onnx_path), "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
