"""The web app end to end, before and around the first analysis: what the first and second visits download,
the second visit offline (service worker), getting ready on a slow link without sending the photo, the runtime's
options for an INT8-weights model, a model marked broken, and the footer's words on the training data.

Skipped with a message when /usr/bin/chromium or node_modules/onnxruntime-web is absent
(`scripts/install_web_assets.sh` installs both); the browser, the servers and the models are tests/app/e2e/conftest.py's
fixtures."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hypoderm.app.server import REPO_NODE_MODULES
from hypoderm_testkit.app import skin_photo
from hypoderm_testkit.browser import E2E_MARKS, PHONE, WAIT_MS, LiveServer, analyse, open_page
from hypoderm_testkit.page import constant_model_dir

pytestmark = E2E_MARKS


def test_second_visit_works_offline(browser: object, model_dir: Path, tmp_path: Path) -> None:
    srv = LiveServer(model_dir)
    ctx, page, _, _ = open_page(browser, srv.url)
    try:
        # wait until the service worker controls the page's origin and has precached everything
        page.evaluate("navigator.serviceWorker.ready")
        page.wait_for_function("fetch('/api/v1/model').then(r => r.json()).then(m => caches.keys().then(async ks => "
                               "ks.length > 0 && (await (await caches.open(ks[0])).match(m.model_url)) !== undefined))",
                               timeout=WAIT_MS)
        srv.stop()  # the server is gone, and the network too
        ctx.set_offline(True)
        page.reload()
        page.wait_for_selector("body[data-ready='browser']", timeout=WAIT_MS)
        from hypoderm_testkit.export import skin_image

        off = tmp_path / "off.png"
        skin_image(1, np.random.default_rng(2), 256).save(off)  # textured skin the not-skin gate passes
        got = analyse(page, off)
        assert got["inference"] == "browser"
        assert page.locator("#topk li" if got["status"] == "ok" else "#candidate-list li").count() == 3
        page.screenshot(path=str(tmp_path / "offline.png"))
    finally:
        ctx.close()
        srv.stop()


class CountingApp:
    """ASGI wrapper counting what leaves the server per path: requests, body bytes (as sent, so compressed),
    Content-Encoding. It sees the service worker's own requests too, which the page's events do not."""

    def __init__(self, app: object) -> None:
        from collections import Counter

        self.app, self.requests, self.bytes, self.encoding = app, Counter(), Counter(), {}

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        self.requests[path] += 1

        async def counted(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                self.encoding[path] = dict(msg.get("headers", [])).get(b"content-encoding", b"").decode()
            elif msg["type"] == "http.response.body":
                self.bytes[path] += len(msg.get("body", b""))
            await send(msg)

        await self.app(scope, receive, counted)


def test_first_visit_downloads_compressed_once_and_second_visit_only_the_page(browser: object, model_dir: Path) -> None:
    """The runtime and model arrive compressed, once each (the service worker's precache takes them from the
    HTTP cache, immutable URLs), with the progress bar gone once ready; a second visit sends at most 50 KB."""
    srv = LiveServer(model_dir, wrap=CountingApp)
    app = srv.served
    ctx, page, _, errors = open_page(browser, srv.url)
    try:
        assert page.evaluate("document.body.dataset.ready") == "browser"
        assert page.locator("#loading").is_hidden()
        info = page.evaluate("fetch('/api/v1/model').then(r => r.json())")
        wasm, model = info["browser_inference"]["wasm_url"], info["model_url"]
        page.wait_for_function("m => caches.keys().then(async ks => ks.length > 0 && "
                               "(await (await caches.open(ks[0])).match(m)) !== undefined)", arg=model, timeout=WAIT_MS)
        page.wait_for_function("navigator.serviceWorker.ready.then(r => r.active && r.active.state === 'activated')",
                               timeout=WAIT_MS)
        assert app.requests[wasm] == 1 and app.requests[model] == 1, (app.requests[wasm], app.requests[model])
        assert app.encoding[wasm] in ("gzip", "br")  # Chromium offers br only over HTTPS
        wasm_file = REPO_NODE_MODULES / "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm"
        assert app.bytes[wasm] < 0.4 * wasm_file.stat().st_size
        before = sum(app.bytes.values())
        page.reload()
        page.wait_for_selector("body[data-ready='browser']", timeout=WAIT_MS)
        second = sum(app.bytes.values()) - before
        assert app.requests[wasm] == 1 and app.requests[model] == 1
        assert second <= 50_000, dict(app.bytes)
        assert not [e for e in errors if "service worker" in e]
    finally:
        ctx.close()
        srv.stop()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_model_marked_broken_says_so(browser: object, tmp_path: Path, lang: str) -> None:
    """Item 8: a model exported with --force despite failed quality checks carries a warning on the page."""
    problems = [{"code": "collapsed", "message": "validation predictions collapse to one class"}]
    srv = LiveServer(constant_model_dir(tmp_path / "m", [0.0, 0.0], abstain_threshold=0.5,
                                        extra={"quality": {"problems": problems, "forced": True}}))
    ctx, page, _, _ = open_page(browser, srv.url, locale={"en": "en-GB", "zh": "zh-CN"}[lang])
    try:
        assert page.is_visible("#model-warning")
        assert {"en": "failed its quality checks", "zh": "未通过质量检查"}[lang] in page.inner_text("#model-warning")
        page.screenshot(path=str(tmp_path / f"broken_model_{lang}.png"))
    finally:
        ctx.close()
        srv.stop()
    ok = LiveServer(constant_model_dir(tmp_path / "ok", [0.0, 1.0]))
    ctx, page, _, _ = open_page(browser, ok.url)
    try:
        assert not page.is_visible("#model-warning")
    finally:
        ctx.close()
        ok.stop()


def _session_options_seen_by_ort(browser: object, url: str, tmp_path: Path) -> tuple[dict, dict]:
    """(the options the page passed to onnxruntime-web's InferenceSession.create, a browser diagnosis):
    the runtime module is served through a wrapper that records them and hands them on unchanged."""
    ctx = browser.new_context(service_workers="block", **PHONE)

    def wrap(route: Any) -> None:
        if "real=1" in route.request.url:
            route.continue_()
            return
        real = json.dumps(route.request.url + ("&" if "?" in route.request.url else "?") + "real=1")
        route.fulfill(status=200, content_type="text/javascript", body=(
            f"import * as real from {real};\nexport * from {real};\n"
            "export const InferenceSession = {create: (model, options) => {\n"
            "  self.__ortSessionOptions = JSON.parse(JSON.stringify(options));  // a copy: ORT adds its own entries\n"
            "  return real.InferenceSession.create(model, options); }};\n"))

    ctx.route("**/ort.wasm.min.mjs*", wrap)
    page = ctx.new_page()
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready='browser']", timeout=WAIT_MS)
        options = page.evaluate("self.__ortSessionOptions")
        skin = tmp_path / "skin.png"
        skin_photo(skin)
        return options, analyse(page, skin)
    finally:
        ctx.close()


def test_int8_weights_model_is_dequantised_at_load_in_the_browser(browser: object, live: LiveServer,
                                                                  tmp_path: Path) -> None:
    """The bundled model stores INT8 weights: the page asks onnxruntime-web to fold them to fp32 when the
    session is created (else every call dequantises them again: 1.17x slower, benchmarks/export/README.md);
    an fp32 model gets no such option (it would switch off a static INT8 model's QDQ fusions)."""
    from hypoderm.inference import bundled_model, load_metadata

    assert load_metadata(bundled_model())["precision"] == "int8-weights"
    srv = LiveServer(bundled_model().parent)
    try:
        options, result = _session_options_seen_by_ort(browser, srv.url, tmp_path)
    finally:
        srv.stop()
    assert options["extra"] == {"session": {"disable_quant_qdq": "1"}}
    assert options["executionProviders"] == ["wasm"] and result["inference"] == "browser"
    options, result = _session_options_seen_by_ort(browser, live.url, tmp_path)  # the fp32 test model
    assert "extra" not in options and result["inference"] == "browser"


SLOW_LINK = {"offline": False, "latency": 50, "downloadThroughput": 4e6 / 8, "uploadThroughput": 4e6 / 8}  # 4 Mbit/s


def slow_page(browser: object, url: str, locale: str = "en-GB") -> tuple[object, object, list[str]]:
    """A phone page on a throttled link (Chrome DevTools Protocol), opened without waiting for it to be ready;
    returns (context, page, every request URL the page and its workers made)."""
    ctx = browser.new_context(locale=locale, **PHONE)
    requests: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", SLOW_LINK)
    page.goto(url)
    return ctx, page, requests


def uploads(requests: list[str], app: CountingApp) -> list[str]:
    """Every request that sent a photo: seen by the browser, or by the server itself (service worker included)."""
    return [u for u in requests if "/api/v1/predict" in u] + [p for p in app.requests if "/api/v1/predict" in p]


def poll(page: object, predicate: Any, timeout_s: float = 60.0) -> None:
    """Wait until predicate() holds, polling from Python (the page's CSP refuses wait_for_function's eval)."""
    deadline = time.time() + timeout_s
    while not predicate():
        assert time.time() < deadline, "timed out"
        page.wait_for_timeout(50)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_on_this_phone_never_uploads_even_on_a_slow_link(browser: object, model_dir: Path, tmp_path: Path,
                                                         lang: str) -> None:
    """Item 1: a photo analysed "on this phone" while the runtime still downloads waits for it (the button says it
    is getting ready, with progress) and is never sent; item 5: the progress counts the bytes that travel."""
    srv = LiveServer(model_dir, wrap=CountingApp)
    ctx, page, requests = slow_page(browser, srv.url, locale={"en": "en-GB", "zh": "zh-CN"}[lang])
    try:
        page.wait_for_selector("#loading:not([hidden])", timeout=WAIT_MS)
        page.set_input_files("#file-input", str(skin_photo(tmp_path / "skin.png", 300)))
        assert page.is_checked("#mode-browser")
        page.click("#analyse")
        button = page.inner_text("#analyse")
        assert button.startswith({"en": "Getting ready on this phone", "zh": "正在本机准备"}[lang]), button
        assert page.is_disabled("#analyse") and page.evaluate("document.body.dataset.ready") is None
        poll(page, lambda: "MB" in page.inner_text("#load-status"))
        status = page.inner_text("#load-status")
        page.screenshot(path=str(tmp_path / f"getting_ready_{lang}.png"), full_page=True)
        page.wait_for_selector("#result:not([hidden])", timeout=120_000)
        assert page.evaluate("document.getElementById('result').dataset.inference") == "browser"
        assert uploads(requests, srv.served) == [] and srv.predictions == 0
        # the total shown is what travelled for the runtime's WASM and the model (compressed), not their size on disk
        info = page.evaluate("fetch('/api/v1/model').then(r => r.json())")
        wire = srv.served.bytes[info["browser_inference"]["wasm_url"]] + srv.served.bytes[info["model_url"]]
        shown = float(re.search(r"/ ([\d.]+) MB" if lang == "zh" else r"of ([\d.]+) MB", status).group(1)) * 1e6
        on_disk = info["browser_inference"]["wasm_bytes"] + info["model_bytes"]
        assert abs(shown - wire) <= 0.06e6 and wire < 0.5 * on_disk
        assert {"en": "Getting ready", "zh": "正在本机准备"}[lang] in status and "model" not in status.lower()
    finally:
        ctx.close()
        srv.stop()


def test_on_this_phone_sends_nothing_when_the_runtime_cannot_start(browser: object, model_dir: Path,
                                                                   tmp_path: Path) -> None:
    """Item 1: if the runtime fails while an on-device analysis waits for it, nothing is sent: the page says so and
    asks; the photo goes to the server only when the person then chooses the server and taps Analyse again."""
    srv = LiveServer(model_dir, wrap=CountingApp)
    held: list[Any] = []
    ctx = browser.new_context(**PHONE)
    requests: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    ctx.route("**/model/*/model.onnx", lambda route: held.append(route))  # hangs until the test lets it fail
    page = ctx.new_page()
    try:
        page.goto(srv.url)
        poll(page, lambda: bool(held))
        page.set_input_files("#file-input", str(skin_photo(tmp_path / "skin.png", 300)))
        page.click("#analyse")
        assert page.inner_text("#analyse").startswith("Getting ready on this phone")
        held[0].abort()
        page.wait_for_selector("#analyse-error:not([hidden])", timeout=WAIT_MS)
        assert "nothing was sent" in page.inner_text("#analyse-error")
        assert uploads(requests, srv.served) == [] and srv.predictions == 0 and page.is_hidden("#result")
        page.check("#mode-server")  # the person chooses to send it
        page.click("#analyse")
        page.wait_for_selector("#result[data-inference='server']:not([hidden])", timeout=WAIT_MS)
        assert srv.predictions == 1
    finally:
        ctx.close()
        srv.stop()


def test_english_footer_uses_display_names(browser: object, tmp_path: Path) -> None:
    """Item 6: the bundled model's summary names classes by identifier ("normal_skin: 97"); the footer says
    "97 photos of Normal skin" in English, as it does in Chinese."""
    srv = LiveServer(constant_model_dir(tmp_path / "m", [0.0, 1.0], extra={"training_data": {
        "summary": "normal_skin: 10, vitiligo: 20", "counts": {"normal_skin": 10, "vitiligo": 20}}}))
    ctx, page, _, _ = open_page(browser, srv.url, locale="en-GB")
    try:
        info = page.inner_text("#model-info")
        assert "10 photos of Normal skin" in info and "20 photos of Vitiligo" in info, info
        assert "normal_skin" not in info and "vitiligo:" not in info
    finally:
        ctx.close()
        srv.stop()


def test_footer_says_how_many_photos_trained_and_validated_the_model(browser: object) -> None:
    """The footer said "trained on" the whole data set (1,599 photos) where 1,279 trained the bundled model and 320
    validated it: the numbers now come from the metadata's split, in both languages."""
    from hypoderm.inference import bundled_model

    td = json.loads(bundled_model().with_suffix(".json").read_text())["training_data"]
    assert td["n_train"] + td["n_val"] + td["n_test"] == sum(td["counts"].values())
    srv = LiveServer(bundled_model().parent)
    ctx, page, _, _ = open_page(browser, srv.url, locale="en-GB")
    try:
        info = page.inner_text("#model-info")
        assert f"trained on {td['n_train']:,} photos (Normal skin {td['train_counts']['normal_skin']}," in info, info
        assert f"and {td['n_val']:,} more for validation" in info, info
        assert f"{sum(td['counts'].values()):,}" not in info  # the whole data set did not train it
        page.click("#lang-switch")
        info = page.inner_text("#model-info")
        assert f"训练照片 {td['n_train']:,} 张" in info and f"另有 {td['n_val']:,} 张用于验证" in info, info
        assert f"正常皮肤 {td['train_counts']['normal_skin']} 张" in info, info
    finally:
        ctx.close()
        srv.stop()
