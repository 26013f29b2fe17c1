"""The web app end to end, in Chinese: the page follows the browser's locale (and server mode answers in it), and
no state a person meets shows a Latin-script sentence.

Skipped with a message when /usr/bin/chromium or node_modules/onnxruntime-web is absent
(`scripts/install_web_assets.sh` installs both); the browser, the servers and the models are tests/app/e2e/conftest.py's
fixtures."""

from __future__ import annotations

import json
from pathlib import Path

from hypoderm_testkit.app import skin_photo
from hypoderm_testkit.browser import E2E_MARKS, WAIT_MS, LiveServer, analyse, open_page
from hypoderm_testkit.page import blue_photo, latin_sentences, visible_text

pytestmark = E2E_MARKS


def test_browser_follows_chinese_locale_and_server_mode(browser: object, live: LiveServer, tmp_path: Path) -> None:
    ctx, page, requests, _ = open_page(browser, live.url, locale="zh-CN")
    try:
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        before = live.predictions
        page.set_input_files("#file-input", str(skin_photo(tmp_path / "s.png", 300, seed=2)))
        page.check("#mode-server")
        page.click("#analyse")
        page.wait_for_selector("#result[data-inference='server']:not([hidden])", timeout=WAIT_MS)
        assert live.predictions == before + 1
        assert any("/api/v1/predict" in u and "framed=true" in u for u in requests)  # the model sees all the square
        answered = page.evaluate("document.getElementById('result').dataset.status") == "ok"
        assert page.is_visible("#gradcam-off") == answered  # this model has no Grad-CAM outputs
    finally:
        ctx.close()


def test_chinese_ui_has_no_latin_sentences(browser: object, sure_live: LiveServer, unsure_live: LiveServer,
                                           tmp_path: Path) -> None:
    """Walk the zh UI through every state a person meets (answers, refusals, errors, history) and fail
    on any Latin-script sentence outside model/class identifiers."""
    idents = ("e2e", "0.1.0", "fp32")
    seen: dict[str, list[str]] = {}

    def check(page: object, state: str) -> None:
        found = latin_sentences(visible_text(page), idents)
        if found:
            seen[state] = found

    ctx, page, _, _ = open_page(browser, sure_live.url, locale="zh-CN")
    try:
        check(page, "start")
        page.set_input_files("#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                    "buffer": b"not an image"}])
        page.wait_for_selector("#load-error:not([hidden])")
        check(page, "file that is not an image")
        analyse(page, skin_photo(tmp_path / "s.png"))
        check(page, "ok answer")
        analyse(page, blue_photo(tmp_path / "b.png"))
        check(page, "not skin")
        # server mode: the heatmap is unavailable for this model, then the server refuses a photo
        page.check("#mode-server")
        page.click("#analyse")
        page.wait_for_selector("#result[data-inference='server']:not([hidden])", timeout=WAIT_MS)
        check(page, "server answer without heatmap")
        page.route("**/api/v1/predict*", lambda route: route.fulfill(
            status=413, content_type="application/json",
            body=json.dumps({"error": "upload_too_large", "detail": "upload too large: 99 bytes > limit 1 bytes",
                             "status": 413})))
        page.click("#analyse")
        page.wait_for_selector("#analyse-error:not([hidden])")
        assert "照片太大" in page.inner_text("#analyse-error")
        check(page, "server refused the photo")
        page.unroute("**/api/v1/predict*")
        page.route("**/api/v1/predict*", lambda route: route.abort())
        page.click("#analyse")
        for _ in range(200):  # (wait_for_function would need 'unsafe-eval', which our CSP refuses)
            if "无法连接服务器" in page.inner_text("#analyse-error"):
                break
            page.wait_for_timeout(50)
        check(page, "server unreachable")
        page.screenshot(path=str(tmp_path / "zh_error.png"), full_page=True)
    finally:
        ctx.close()
    ctx, page, _, _ = open_page(browser, unsure_live.url, locale="zh-CN")
    try:
        analyse(page, skin_photo(tmp_path / "u.png"))
        check(page, "uncertain answer")
    finally:
        ctx.close()
    assert not seen, seen


def test_an_error_on_screen_follows_a_language_switch(browser: object, sure_live: LiveServer, tmp_path: Path) -> None:
    """An error already on screen stayed in the language it was first said in after the 中文 / EN switch; and a
    server's 503 (busy) showed only "error 503". The busy server is said in words, and the switch says it again."""
    ctx, page, _, _ = open_page(browser, sure_live.url, locale="en-US")
    try:
        page.set_input_files("#file-input", str(skin_photo(tmp_path / "s.png", 300, seed=2)))
        page.check("#mode-server")
        page.route("**/api/v1/predict*", lambda route: route.fulfill(
            status=503, content_type="application/json",
            body=json.dumps({"error": "server_busy", "detail": "busy", "status": 503})))
        page.click("#analyse")
        page.wait_for_selector("#analyse-error:not([hidden])", timeout=WAIT_MS)
        english = page.inner_text("#analyse-error")
        assert "busy" in english and "503" not in english
        page.click("#lang-switch")
        chinese = page.inner_text("#analyse-error")
        assert "服务器正在处理其他照片" in chinese and "busy" not in chinese
        page.click("#lang-switch")
        assert page.inner_text("#analyse-error") == english
    finally:
        ctx.close()
