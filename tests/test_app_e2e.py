"""The web app end to end, in a real headless Chromium (Debian's `chromium`, driven by Playwright)
in a phone viewport: in-browser inference (no request reaches /api/v1/predict), parity with the
server, language switch, offline reload through the service worker, server mode, history.

Skipped with a message when /usr/bin/chromium or node_modules/onnxruntime-web is absent
(`scripts/install_web_assets.sh` installs both)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm.app.server import REPO_NODE_MODULES, create_app, find_web_assets

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hypopigmented"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="e2e: /usr/bin/chromium is missing (apt-get install chromium)"),
    pytest.mark.skipif(find_web_assets(REPO_NODE_MODULES) is None,
                       reason="e2e: node_modules/onnxruntime-web is missing (run scripts/install_web_assets.sh)"),
]


class LiveServer:
    """uvicorn on 127.0.0.1, a free port, in a thread; stop() shuts it down."""

    def __init__(self, model_dir: Path) -> None:
        import uvicorn

        self.app = create_app(model_dir, web_assets=REPO_NODE_MODULES)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    @property
    def predictions(self) -> int:
        return self.app.state.hypoderm.predictions

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN (random weights, outputs that differ by input) at 224 px, 3 classes."""
    from test_app_api import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("e2e_model"), size=224, temperature=0.5, abstain_threshold=0.5)


@pytest.fixture(scope="module")
def live(model_dir: Path) -> Iterator[LiveServer]:
    srv = LiveServer(model_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def skin_photo(path: Path, size: int = 224, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    arr = np.empty((size, size, 3), np.float32)
    arr[:] = (190, 135, 105)
    arr += rng.normal(0, 5, arr.shape) + (xx / size * 20)[..., None]
    patch = (yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 < (size * 0.2) ** 2
    arr[patch] = arr[patch] * 0.3 + 240 * 0.7
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)
    return path


def open_page(browser: object, url: str, locale: str = "en-US") -> tuple[object, object, list[str], list[str]]:
    ctx = browser.new_context(locale=locale, **PHONE)
    page = ctx.new_page()
    requests: list[str] = []
    errors: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=60_000)
    return ctx, page, requests, errors


def analyse(page: object, photo: Path) -> dict:
    page.evaluate("document.getElementById('result').hidden = true")
    page.set_input_files("#file-input", str(photo))
    page.click("#analyse")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    return page.evaluate("(() => { const d = document.getElementById('result').dataset;"
                         " return {status: d.status, inference: d.inference, probabilities: JSON.parse(d.probabilities),"
                         " skin: Number(d.skinFraction)}; })()")


def server_result(model_dir: Path, photo: Path) -> dict:
    from hypoderm.inference import OnnxPredictor

    return OnnxPredictor(model_dir / "model.onnx").predict_image(Image.open(photo).convert("RGB"))


def test_in_browser_inference_parity_language_and_history(browser: object, live: LiveServer, model_dir: Path,
                                                          tmp_path: Path) -> None:
    ctx, page, requests, errors = open_page(browser, live.url)
    try:
        assert page.evaluate("document.body.dataset.ready") == "browser"
        assert page.evaluate("self.crossOriginIsolated") is True  # threads available
        photo = skin_photo(tmp_path / "skin.png")
        got = analyse(page, photo)
        assert got["inference"] == "browser"
        # top-3 shown, computed in the browser: no request reached the predict endpoint
        assert page.locator("#topk li").count() == 3
        assert not any("/api/v1/predict" in u for u in requests) and live.predictions == 0
        # every request went to our own origin
        assert all(u.startswith(live.url) or u.startswith(("data:", "blob:")) for u in requests), requests
        # parity: same 224x224 pixels -> same probabilities as the server's predictor
        want = server_result(model_dir, photo)
        for label, p in want["probabilities"].items():
            assert abs(got["probabilities"][label] - p) < 1e-4, (label, got["probabilities"][label], p)
        assert got["status"] == want["status"] and got["skin"] == want["ood"]["skin_fraction"]
        assert "Decision aid, not a diagnosis" in page.inner_text("#notice")
        assert "trained on:" in page.inner_text("#model-info")  # what data the model saw
        assert page.locator("#info-card h3").count() == 1
        # look-alikes outside the model are listed as such (3 classes in the model, 8 cards)
        assert page.locator("#lookalike-cards article").count() == 5
        # language switch
        page.click("#lang-switch")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        assert "辅助决策工具" in page.inner_text("#notice")
        assert "训练数据" in page.inner_text("#model-info")
        assert any("\u4e00" <= ch <= "\u9fff" for ch in page.inner_text("#verdict"))
        # history: one case with thumbnail, then deleted
        assert page.locator("#history-list li img").count() == 1
        shot = tmp_path / "phone_result_zh.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
        page.once("dialog", lambda d: d.accept())
        page.click("#history-clear")
        page.wait_for_selector("#history-empty:not([hidden])")
        assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
    finally:
        ctx.close()


def test_browser_gate_matches_python_and_rejects_non_skin(browser: object, live: LiveServer, model_dir: Path,
                                                           tmp_path: Path) -> None:
    """The page's not-skin gate (static/js/preprocess.js) gives Python's scores (within 1e-9) and
    verdicts on skin and non-skin crops, and a wood picture is refused in the UI."""
    import nonskin
    from hypoderm.inference import OnnxPredictor, prepare
    from hypoderm.ood import ood_check
    from hypoderm.preprocess import PreprocessSpec

    predictor = OnnxPredictor(model_dir / "model.onnx")
    spec = PreprocessSpec.from_dict(predictor.metadata["input"])
    images = {f"skin_{i}": Image.open(skin_photo(tmp_path / f"s{i}.png", 224 + 32 * i, seed=i)) for i in range(3)}
    images |= {f"{fam}": nonskin.picture(fam, 4242) for fam in nonskin.FAMILIES}
    crops = {name: prepare(img.convert("RGB"), spec)[0] for name, img in images.items()}
    logits = [0.7, -0.2, 0.1]
    ctx, page, _, _ = open_page(browser, live.url)
    try:
        got = page.evaluate(
            "async ({crops, logits, size}) => { const m = await import('/static/js/preprocess.js');"
            " const ood = (await (await fetch('/api/v1/model')).json()).ood; const out = {};"
            " for (const [k, v] of Object.entries(crops))"
            "   out[k] = m.oodCheck(new Uint8ClampedArray(v), size, logits, ood);"
            " return out; }",
            {"crops": {k: c.ravel().tolist() for k, c in crops.items()}, "logits": logits, "size": spec.size})
        verdicts = set()
        for name, crop in crops.items():
            want = ood_check(crop, np.array(logits), predictor.metadata.get("ood"))
            assert abs(got[name]["gate_score"] - want["gate_score"]) <= 1e-9, (name, got[name], want)
            assert got[name]["skin_fraction"] == want["skin_fraction"] and got[name]["is_skin"] == want["is_skin"], name
            verdicts.add(want["is_skin"])
        assert verdicts == {True, False}
        wood = tmp_path / "wood.png"
        nonskin.picture("wood", 4243).save(wood)
        assert server_result(model_dir, wood)["status"] == "not_skin"
        res = analyse(page, wood)
        assert res["inference"] == "browser" and res["status"] == "not_skin"
        assert "does not look like a skin photo" in page.inner_text("#verdict")
    finally:
        ctx.close()


def test_browser_follows_chinese_locale_and_server_mode(browser: object, live: LiveServer, tmp_path: Path) -> None:
    ctx, page, requests, _ = open_page(browser, live.url, locale="zh-CN")
    try:
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        before = live.predictions
        page.set_input_files("#file-input", str(skin_photo(tmp_path / "s.png", 300, seed=2)))
        page.check("#mode-server")
        page.click("#analyse")
        page.wait_for_selector("#result[data-inference='server']:not([hidden])", timeout=60_000)
        assert live.predictions == before + 1
        assert any("/api/v1/predict" in u for u in requests)
        assert page.is_visible("#gradcam-off")  # this model has no companion checkpoint
    finally:
        ctx.close()


def test_second_visit_works_offline(browser: object, model_dir: Path, tmp_path: Path) -> None:
    srv = LiveServer(model_dir)
    ctx, page, _, _ = open_page(browser, srv.url)
    try:
        # wait until the service worker controls the page's origin and has precached everything
        page.evaluate("navigator.serviceWorker.ready")
        page.wait_for_function("caches.keys().then(async ks => ks.length > 0 && "
                               "(await (await caches.open(ks[0])).match('/model/model.onnx')) !== undefined)",
                               timeout=60_000)
        srv.stop()  # the server is gone, and the network too
        ctx.set_offline(True)
        page.reload()
        page.wait_for_selector("body[data-ready='browser']", timeout=60_000)
        got = analyse(page, skin_photo(tmp_path / "off.png", 256, seed=3))
        assert got["inference"] == "browser" and page.locator("#topk li").count() == 3
        page.screenshot(path=str(tmp_path / "offline.png"))
    finally:
        ctx.close()
        srv.stop()


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="realdata: ../shared/data/hypopigmented is absent")
def test_real_photos_top1_agrees_browser_vs_server(browser: object, live: LiveServer) -> None:
    """The same framed crop, run in the browser and then sent to the server, gets the same top-1."""
    photos = sorted(REAL_DATA.glob("vitiligo/*"))[:4] + sorted(REAL_DATA.glob("normal_skin/*"))[:4]
    ctx, page, _, _ = open_page(browser, live.url)
    try:
        for photo in photos:
            page.check("#mode-browser")
            b = analyse(page, photo)
            page.check("#mode-server")
            page.click("#analyse")
            page.wait_for_selector("#result[data-inference='server']", timeout=60_000)
            s = json.loads(page.evaluate("document.getElementById('result').dataset.probabilities"))
            assert max(b["probabilities"], key=b["probabilities"].get) == max(s, key=s.get), photo.name
            for label, p in s.items():
                assert abs(b["probabilities"][label] - p) < 1e-4, (photo.name, label)
    finally:
        ctx.close()
