"""`hypoderm serve` API: every endpoint, the hardening (bad uploads get the right JSON 4xx), the
security headers, the service worker and the browser preprocessing's bit-exact match with Python.

The model is a tiny CNN exported here with `hypoderm.export.export_onnx` (input 64 px), so these
tests run in seconds on CPU and need no browser."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hypoderm.app import state as app_state
from hypoderm.app.server import ORT_FILES, STATIC_DIR, Limits, ModelLoadError, create_app
from hypoderm.cards import TEXT_DIR
from hypoderm.inference import model_path
from hypoderm_testkit.app import CLASSES, build_model_dir, confident, png_bytes, skin_png

MAX_BYTES = 300_000
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def fake_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in onnxruntime-web install (the API tests do not run it; the e2e tests use the real one)."""
    dist = tmp_path_factory.mktemp("node_modules") / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in ORT_FILES:
        (dist / name).write_bytes(b"// " + name.encode())
    (dist.parent / "package.json").write_text(json.dumps({"version": "9.9.9"}))
    return dist.parents[1]


@pytest.fixture(scope="module")
def client(model_dir: Path, fake_assets: Path) -> TestClient:
    app = create_app(model_dir, web_assets=fake_assets,
                     limits=Limits(max_upload_bytes=MAX_BYTES, max_pixels=MAX_PIXELS))
    return TestClient(app)


def post_file(client: TestClient, data: bytes, name: str = "photo.png", ctype: str = "image/png", **params: object):
    return client.post("/api/v1/predict", files={"image": (name, data, ctype)}, params=params)


# ---- endpoints ------------------------------------------------------------------------------

def test_health(client: TestClient) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model_loaded"] is True and body["model_name"] == "tiny"
    assert body["browser_inference"] is True


def test_model_info(client: TestClient, model_dir: Path) -> None:
    body = client.get("/api/v1/model").json()
    assert body["class_names"] == CLASSES
    assert body["version"] == "0.1.0" and body["metrics"] == {"test/macro_f1": 0.5}
    assert body["temperature"] == 1.3 and body["abstain_threshold"] == 0.4
    assert body["input"]["size"] == 64 and body["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert body["gradcam"] == {"available": False, "reason": "no_gradcam_outputs"}  # this model has no outputs
    base = body["browser_inference"]["script"].removesuffix("ort.wasm.min.mjs")
    assert re.fullmatch(r"/vendor/ort/[0-9a-f]{16}/", base)  # content-hashed (tests/app/test_app_delivery.py)
    assert body["browser_inference"] == {"available": True, "runtime": "onnxruntime-web 9.9.9",
                                         "script": f"{base}ort.wasm.min.mjs",
                                         "wasm_url": f"{base}ort-wasm-simd-threaded.wasm",
                                         "wasm_bytes": len(b"// ort-wasm-simd-threaded.wasm"), "reason": None}
    assert body["limits"] == {"max_upload_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS, "max_aspect_ratio": 20.0,
                              "upload_timeout_s": 60.0}
    assert client.get(body["model_url"]).content == (model_dir / "model.onnx").read_bytes()


def test_predict_multipart_matches_predictor(client: TestClient, model_dir: Path) -> None:
    from hypoderm.inference import OnnxPredictor

    data = skin_png()
    r = post_file(client, data)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = OnnxPredictor(model_dir / "model.onnx").predict_image(Image.open(io.BytesIO(data)).convert("RGB"))
    assert [k["label"] for k in body["top_k"]] == [k["label"] for k in expected["top_k"]]
    assert len(body["top_k"]) == 3
    for label, p in expected["probabilities"].items():
        assert body["probabilities"][label] == pytest.approx(p, abs=1e-6)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert body["status"] == expected["status"] and body["ood"]["is_skin"] is True
    assert body["inference"] == "server" and body["image"] == {"width": 160, "height": 120}
    assert "gradcam" not in body


def test_predict_framed_square_is_seen_whole(client: TestClient, model_dir: Path) -> None:
    """Issues 21 and 29: the page sends the square it framed with framed=true; the server runs the model on all of
    it, as the page does, and a square sent without framed=true goes through the same rule (one rule)."""
    from hypoderm.inference import OnnxPredictor

    data = skin_png((150, 150), seed=3)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    predictor = OnnxPredictor(model_dir / "model.onnx")
    framed = post_file(client, data, framed="true").json()
    want = predictor.predict_image(img, framed=True)
    for label, p in want["probabilities"].items():
        assert framed["probabilities"][label] == pytest.approx(p, abs=1e-6)
    assert want == predictor.predict_image(img)
    assert post_file(client, data).json()["probabilities"] == framed["probabilities"]


@pytest.mark.parametrize("size", [(150, 150), (97, 131), (700, 700), (1203, 777)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_one_rule_for_predict_the_api_and_the_predictor(model_dir: Path, fake_assets: Path, tmp_path: Path,
                                                        size: tuple[int, int]) -> None:
    """Issue 29: the same picture through `hypoderm predict` (a file, decoded at reduced size), the API (multipart,
    framed or not) and OnnxPredictor.predict_image (the full-resolution image, reduced by the rule itself) gives
    the identical result: status, reason, probabilities and not-skin statistics, for squares and whole photos,
    small and large enough to be box-reduced (the 64 px test model reduces from 2 x 146 px)."""
    from hypoderm.imaging.io import load_rgb
    from hypoderm.inference import OnnxPredictor
    from hypoderm.inference.files import predict_files
    from hypoderm.inference.preprocess import reduce_factor

    predictor = OnnxPredictor(model_dir / "model.onnx")
    assert (reduce_factor(min(size), predictor.spec) > 1) == (min(size) >= 700)
    data = skin_png(size, seed=min(size))
    photo = tmp_path / "photo.png"
    photo.write_bytes(data)
    want = predictor.predict_image(load_rgb(photo))
    cli = predict_files(predictor, [photo])[0]
    api = TestClient(create_app(model_dir, web_assets=fake_assets))
    answers = {"cli": cli, "api": post_file(api, data).json(), "api framed": post_file(api, data, framed="true").json()}
    for where, got in answers.items():
        assert (got["status"], got["reason"]) == (want["status"], want["reason"]), where
        assert got["probabilities"] == want["probabilities"], where
        assert got["ood"] == want["ood"], where


def test_predict_raw_body_and_top_k(client: TestClient) -> None:
    r = client.post("/api/v1/predict", content=png_bytes(Image.open(io.BytesIO(skin_png())), "JPEG"),
                    headers={"Content-Type": "image/jpeg"}, params={"top_k": 1})
    assert r.status_code == 200, r.text
    assert len(r.json()["top_k"]) == 1


def test_predict_not_skin(client: TestClient) -> None:
    blue = png_bytes(Image.new("RGB", (64, 64), (30, 60, 200)))
    body = post_file(client, blue).json()
    assert body["status"] == "not_skin" and body["ood"]["skin_fraction"] == 0.0
    # issue 29: a refused picture gets no class and no class probabilities (documented: PREDICT_SCHEMA.md)
    assert body["top_k"] == [] and body["answer"] is None and body["probabilities"] is None
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Prediction"]["properties"]
    assert "null for a refused picture" in schema["probabilities"]["description"]


def test_predict_uncertain_below_threshold(tmp_path: Path, fake_assets: Path) -> None:
    app = create_app(build_model_dir(tmp_path, abstain_threshold=0.99), web_assets=fake_assets)
    body = post_file(TestClient(app), skin_png()).json()
    assert body["status"] == "uncertain" and "dermatologist" in body["message"]


def test_gradcam_unavailable_is_reported(client: TestClient) -> None:
    body = post_file(client, skin_png(), gradcam="true").json()
    assert body["gradcam"] == {"available": False, "reason": "no_gradcam_outputs"}


# ---- bad inputs -----------------------------------------------------------------------------

def _truncated() -> bytes:
    data = png_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    return data[: len(data) // 2]


BAD_UPLOADS = {
    # name: (bytes, status, error code, words in the message)
    "empty": (b"", 400, "empty_upload", "zero-byte"),
    "huge": (b"\xff\xd8\xff" + bytes(MAX_BYTES + 10), 413, "upload_too_large", "upload too large"),
    "truncated": (_truncated(), 422, "truncated_image", "truncated"),
    "not_image_pdf": (b"%PDF-1.7\n1 0 obj <<>> endobj\n" * 10, 415, "not_an_image", "PDF"),
    "not_image_text": (b"hello, this is text\n" * 10, 415, "not_an_image", "text"),
    "too_many_pixels": (png_bytes(Image.new("RGB", (1200, 1000), (200, 150, 120))), 413, "too_many_pixels",
                        "too many pixels"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_gets_json_4xx(client: TestClient, case: str) -> None:
    data, status, code, words = BAD_UPLOADS[case]
    r = post_file(client, data)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == code and body["status"] == status
    assert words.lower() in body["detail"].lower()


def test_huge_declared_length_refused_before_reading(client: TestClient) -> None:
    r = client.post("/api/v1/predict", content=b"x" * 10, headers={"Content-Type": "image/png",
                                                                  "Content-Length": str(10 * MAX_BYTES)})
    assert r.status_code == 413 and "limit" in r.json()["detail"]


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type(client: TestClient, ctype: str | None) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    r = client.post("/api/v1/predict", content=skin_png(), headers=headers)
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported_content_type" and "multipart/form-data" in r.json()["detail"]


def test_missing_field_and_bad_parameter(client: TestClient) -> None:
    r = client.post("/api/v1/predict", files={"other": ("a.png", skin_png(), "image/png")})
    assert r.status_code == 422 and r.json()["error"] == "missing_image" and "'image'" in r.json()["detail"]
    r = post_file(client, skin_png(), top_k=0)
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameter" and "top_k" in r.json()["detail"]


def test_content_sniffed_not_file_name(client: TestClient) -> None:
    ok = post_file(client, skin_png(), name="report.pdf", ctype="application/pdf")
    assert ok.status_code == 200
    bad = post_file(client, b"%PDF-1.4\n" + b"0" * 200, name="photo.jpg", ctype="image/jpeg")
    assert bad.status_code == 415 and "PDF" in bad.json()["detail"]


def test_server_keeps_running_after_bad_inputs(client: TestClient) -> None:
    for data, *_ in BAD_UPLOADS.values():
        post_file(client, data)
    assert client.get("/api/v1/health").json()["status"] == "ok"
    assert post_file(client, skin_png()).status_code == 200


def test_unknown_routes_are_json(client: TestClient) -> None:
    r = client.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.get("/api/v1/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    # Only the WASM build is served, never an arbitrary file from the npm package.
    assert client.get("/vendor/ort/ort.all.min.js").status_code == 404
    assert client.get("/vendor/ort/..%2Fpackage.json").status_code == 404


# ---- page, headers, service worker, docs ----------------------------------------------------

def test_page_and_security_headers(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "<title>hypoderm</title>" in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self' 'wasm-unsafe-eval'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    assert client.get("/api/v1/health").headers["content-security-policy"] == csp
    assert "Decision aid, not a diagnosis" in r.text


def test_static_files_make_no_third_party_request() -> None:
    """No absolute URL, no inline script or style attribute anywhere in the app's files."""
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in {".html", ".js", ".css", ".json", ".webmanifest", ".svg"}:
            # An SVG namespace is an identifier, never fetched.
            text = path.read_text(encoding="utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")
            urls = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.I)
            assert not urls, f"{path.name} refers to {urls}"
            if path.suffix == ".html":
                assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"inline script in {path.name}"
                assert " style=" not in text and "<style" not in text


def test_service_worker_precaches_shell_model_and_runtime(client: TestClient) -> None:
    r = client.get("/sw.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    files = json.loads(re.search(r"const PRECACHE = (\[.*?\]);", r.text).group(1))
    info = client.get("/api/v1/model").json()
    base = info["browser_inference"]["script"].removesuffix("ort.wasm.min.mjs")
    for needed in ["/", info["model_url"], "/api/v1/model", "/static/js/app.js", "/static/data/cards.json",
                   "/static/data/messages.json", "/static/js/verdict.js", "/static/js/page.js", "/static/js/runtime.js",
                   "/static/js/render.js", *(f"{base}{f}" for f in ORT_FILES)]:
        assert needed in files
    for f in files:  # every precached file exists, or install would fail
        assert client.get(f).status_code == 200, f
    cache = re.search(r'const CACHE = "([^"]+)"', r.text).group(1)
    assert cache.startswith("hypoderm-0.1.0-") and cache.endswith("-9.9.9")


def test_manifest_is_installable(client: TestClient) -> None:
    m = client.get("/manifest.webmanifest").json()
    assert m["display"] == "standalone" and m["start_url"] == "/"
    sizes = {i["sizes"] for i in m["icons"]}
    assert {"192x192", "512x512"} <= sizes
    for icon in m["icons"]:
        assert client.get(icon["src"]).status_code == 200


def test_openapi_and_docs(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/health", "/api/v1/model", "/api/v1/predict"} <= set(paths)
    r = client.get("/docs")
    assert r.status_code == 200 and "/openapi.json" in r.text


def test_openapi_describes_the_answers(client: TestClient) -> None:
    """/docs shows the Pydantic models of hypoderm.app.api; the real answers must fit them (no field missing,
    none unknown), so the documentation cannot drift from what the routes return."""
    from hypoderm.app.api import Error, Health, ModelInfo, Prediction

    paths = client.get("/openapi.json").json()["paths"]
    for path, method, model in [("/api/v1/health", "get", "Health"), ("/api/v1/model", "get", "ModelInfo"),
                                ("/api/v1/predict", "post", "Prediction")]:
        schema = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, (path, schema)
    assert "Error" in paths["/api/v1/predict"]["post"]["responses"]["415"]["content"]["application/json"]["schema"][
        "$ref"]
    Health.model_validate(client.get("/api/v1/health").json())
    ModelInfo.model_validate(client.get("/api/v1/model").json())
    for params in ({}, {"gradcam": "true", "top_k": 1}):
        Prediction.model_validate(post_file(client, skin_png(), **params).json())
    Error.model_validate(post_file(client, b"not an image").json())
    # the body (read by hand, so FastAPI cannot see it) is described, so that /docs can send a photo
    body = paths["/api/v1/predict"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]["schema"]
    assert body["required"] and form["required"] == ["image"] and form["properties"]["image"]["format"] == "binary"
    assert {"image/*", "application/octet-stream"} <= set(body["content"])


def test_cards_cover_every_class_in_both_languages() -> None:
    cards = json.loads((TEXT_DIR / "cards.json").read_text(encoding="utf-8"))["cards"]
    expected = {"vitiligo", "normal_skin", "tinea_versicolor", "pityriasis_alba", "idiopathic_guttate_hypomelanosis",
                "nevus_depigmentosus", "leprosy", "post_inflammatory_hypopigmentation"}
    assert expected <= set(cards)
    for card_id, card in cards.items():
        for lang in ("en", "zh"):
            for field in ("name", "what", "looks", "apart", "doctor"):
                assert card[lang][field].strip(), (card_id, lang, field)
    assert "Wood" in cards["vitiligo"]["en"]["apart"] and "伍德灯" in cards["vitiligo"]["zh"]["apart"]


# ---- model loading and the command ----------------------------------------------------------

def test_without_web_assets_the_page_uses_the_server(model_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(app_state.WEB_ASSETS_ENV, raising=False)
    monkeypatch.setattr(app_state, "REPO_NODE_MODULES", tmp_path / "absent")
    c = TestClient(create_app(model_dir))
    info = c.get("/api/v1/model").json()["browser_inference"]
    assert info["available"] is False and "install_web_assets" in info["reason"]
    precache = json.loads(re.search(r"PRECACHE = (\[.*?\]);", c.get("/sw.js").text).group(1))
    assert not any("/vendor/ort/" in f for f in precache)
    assert c.get("/vendor/ort/ort.wasm.min.mjs").status_code == 404


def test_model_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelLoadError, match="model not found"):
        create_app(tmp_path / "nothing")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        create_app(tmp_path)
    monkeypatch.setattr(model_path, "bundled_model", lambda: tmp_path / "assets" / "model.onnx")
    from hypoderm.cli import main

    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "bundled model is missing" in err and "--model" in err and "Traceback" not in err
    assert main(["serve", "--model", str(tmp_path / "x.onnx")]) == 2
    assert "model not found" in capsys.readouterr().err


def test_serve_warns_at_start_up_about_a_broken_model(tmp_path: Path, model_dir: Path, fake_assets: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 21 item 8: the page warns about a model exported with --force despite failed quality checks; whoever
    starts the server hears it first, on stderr."""
    import uvicorn

    from hypoderm.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    problems = [{"code": "collapsed", "message": "validation predictions collapse to one class"}]
    broken = build_model_dir(tmp_path, extra={"quality": {"problems": problems, "forced": True}})
    assert main(["serve", "--model", str(broken), "--web-assets", str(fake_assets)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: this model failed its quality checks" in err and "collapse to one class" in err
    assert main(["serve", "--model", str(model_dir), "--web-assets", str(fake_assets)]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_server_imports_no_torch_with_an_onnx_model(model_dir: Path) -> None:
    code = (
        "import sys, io\n"
        "from fastapi.testclient import TestClient\n"
        "from PIL import Image\n"
        "from hypoderm.app.server import create_app\n"
        f"c = TestClient(create_app({str(model_dir)!r}))\n"
        "buf = io.BytesIO(); Image.new('RGB', (40, 40), (200, 150, 120)).save(buf, 'PNG')\n"
        "r = c.post('/api/v1/predict', files={'image': ('a.png', buf.getvalue(), 'image/png')})\n"
        "assert r.status_code == 200, r.text\n"
        "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_gradcam_from_the_onnx_outputs(tmp_path: Path) -> None:
    """A model exported with the Grad-CAM outputs gets a heat map without torch or a checkpoint, at
    the uploaded photo's resolution; a rejected photo gets none."""
    import torch

    from hypoderm.models import create_model

    torch.manual_seed(0)
    build_model_dir(tmp_path, size=64, classes=["normal_skin", "vitiligo"],
                    model=confident(create_model("mnv3s", num_classes=2)), model_name="mnv3s")
    c = TestClient(create_app(tmp_path))
    assert c.get("/api/v1/model").json()["gradcam"] == {"available": True, "reason": None, "method": "grad-cam",
                                                        "layer": "features", "features": "features",
                                                        "cam_weights": "cam_weights"}
    body = post_file(c, skin_png((96, 80)), gradcam="true").json()
    cam = body["gradcam"]
    assert body["status"] == "ok" and cam["available"] is True and cam["label"] == body["top_k"][0]["label"]
    png = Image.open(io.BytesIO(__import__("base64").b64decode(cam["image"].split(",", 1)[1])))
    assert png.format == "PNG" and png.size == (96, 80)
    blue = png_bytes(Image.new("RGB", (64, 64), (30, 60, 200)))
    body = post_file(c, blue, gradcam="true").json()
    assert body["status"] == "not_skin" and body["top_k"] == [] and body["gradcam"]["available"] is False
    # an answer withheld (uncertain) gets none either: a map of its hidden top class would name it
    md = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**md, "abstain_threshold": 0.999999}))
    body = post_file(TestClient(create_app(tmp_path)), skin_png((96, 80)), gradcam="true").json()
    assert body["status"] == "uncertain" and body["gradcam"] == {"available": False, "reason": "uncertain"}


def test_a_taken_port_is_a_usage_error_said_before_the_address(model_dir: Path, fake_assets: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`serve` on a port another server holds printed "on http://...:PORT/" and then uvicorn's "[Errno 98]", and
    exited 3 (hypoderm crashed). It is now one line that says the port is taken and what to do, exit 2, and no
    address is announced; the other server is not touched."""
    import socket

    from hypoderm.cli import main

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        rc = main(["serve", "--model", str(model_dir), "--web-assets", str(fake_assets), "--port", str(port)])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert f"port {port} on 127.0.0.1 is already in use" in err and "--port" in err
        assert "http://" not in err and "Traceback" not in err and "Errno" not in err
        other.settimeout(0.1)
        with pytest.raises(TimeoutError):
            other.accept()  # nobody connected to it, and it still listens
