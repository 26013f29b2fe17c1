"""The web app end to end, the history and a result that is not the latest: a past result reopened from the
history, marked as such; a failed server call marks the result on screen as an earlier one.

Skipped with a message when /usr/bin/chromium or node_modules/onnxruntime-web is absent
(`scripts/install_web_assets.sh` installs both); the browser, the servers and the models are tests/app/e2e/conftest.py's
fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypoderm_testkit.app import skin_photo
from hypoderm_testkit.browser import E2E_MARKS, WAIT_MS, LiveServer, analyse, open_page
from hypoderm_testkit.page import blue_photo

pytestmark = E2E_MARKS


def test_history_reopens_a_past_result_and_hides_its_buttons_when_empty(browser: object, sure_live: LiveServer,
                                                                         tmp_path: Path) -> None:
    """An empty history shows no "Export"/"Delete all"; tapping a case shows its result again, marked as a past
    one with its photo and time; the result area says so until a new analysis."""
    ctx, page, _, _ = open_page(browser, sure_live.url, locale="en-GB")
    page.on("dialog", lambda d: d.accept())
    try:
        assert page.is_visible("#history-empty")
        assert page.is_hidden("#history-export") and page.is_hidden("#history-clear")
        analyse(page, skin_photo(tmp_path / "skin.png"))  # vitiligo >99%
        assert page.is_visible("#history-export") and page.is_visible("#history-clear")
        assert page.is_hidden("#result-note") and page.evaluate("document.getElementById('result').dataset.past") == ""
        analyse(page, blue_photo(tmp_path / "blue.png"))  # not analysed
        assert page.locator("#history-list li").count() == 2
        older = page.locator("#history-list li").nth(1)  # newest first: the skin photo
        when = older.locator(".when").inner_text()
        thumb = older.locator("img").get_attribute("src")
        older.locator("button.open").click()
        section = page.evaluate("(() => { const d = document.getElementById('result').dataset;"
                                " return {status: d.status, past: d.past, p: JSON.parse(d.probabilities)}; })()")
        assert section["status"] == "ok" and section["past"] == "true" and section["p"]["vitiligo"] > 0.99
        assert page.inner_text("#verdict").startswith("Most likely: Vitiligo (>99%)")
        note = page.inner_text("#result-note")
        assert note.startswith("Past result from ") and when in note and "not a new analysis" in note, note
        assert page.get_attribute("#result-note-img", "src") == thumb and page.is_visible("#result-note-img")
        assert "at the time" in page.inner_text("#result-meta")  # no time of a run that did not happen now
        page.click("#lang-switch")  # still marked, in Chinese
        assert page.inner_text("#result-note").startswith("过去的结果") and when not in page.inner_text("#verdict")
        page.click("#lang-switch")
        analyse(page, skin_photo(tmp_path / "skin2.png", seed=3))  # a new analysis is not marked
        assert page.is_hidden("#result-note") and page.evaluate("document.getElementById('result').dataset.past") == ""
        page.click("#history-clear")
        page.wait_for_selector("#history-empty:not([hidden])")
        assert page.locator("#history-list li").count() == 0
        assert page.is_hidden("#history-export") and page.is_hidden("#history-clear")
    finally:
        ctx.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_failed_server_call_marks_the_result_on_screen_as_an_earlier_one(browser: object, sure_live: LiveServer,
                                                                          tmp_path: Path, lang: str) -> None:
    """After a failed call the previous result stayed on screen unmarked, as if it were the new photo's: it now
    says it is an earlier result (and is dimmed) until an analysis succeeds."""
    words = {"en": "Earlier result, not from the analysis you just asked for",
             "zh": "这是之前的结果，不是您刚才请求的分析的结果"}[lang]
    ctx, page, _, _ = open_page(browser, sure_live.url, locale={"en": "en-GB", "zh": "zh-CN"}[lang])
    try:
        analyse(page, skin_photo(tmp_path / "skin.png"))
        assert page.is_hidden("#result-note")
        page.set_input_files("#file-input", str(skin_photo(tmp_path / "other.png", seed=5)))
        page.check("#mode-server")
        page.route("**/api/v1/predict*", lambda route: route.fulfill(
            status=503, content_type="application/json",
            body=json.dumps({"error": "server_busy", "detail": "busy", "status": 503})))
        # a new photo hides the last result; the failure then leaves nothing unmarked
        page.click("#analyse")
        page.wait_for_selector("#analyse-error:not([hidden])")
        assert page.is_hidden("#result")
        page.click("#lang-switch")  # a language switch does not bring the hidden result back
        page.click("#lang-switch")
        assert page.is_hidden("#result")
        # a result for this photo, then a failed call on the same photo: the result is marked as an earlier one
        page.unroute("**/api/v1/predict*")
        page.click("#analyse")
        page.wait_for_selector("#result[data-inference='server']:not([hidden])", timeout=WAIT_MS)
        page.route("**/api/v1/predict*", lambda route: route.abort())
        page.click("#analyse")
        page.wait_for_selector("#result[data-stale='true']", timeout=WAIT_MS)
        assert page.is_visible("#analyse-error") and page.is_visible("#result-note")
        assert page.inner_text("#result-note").startswith(words), page.inner_text("#result-note")
        assert page.evaluate("getComputedStyle(document.getElementById('verdict')).opacity") == "0.45"
        page.click("#lang-switch")  # the mark survives a language switch
        page.click("#lang-switch")
        assert page.inner_text("#result-note").startswith(words)
        page.unroute("**/api/v1/predict*")
        page.click("#analyse")
        page.wait_for_selector("#result[data-stale='']:not([hidden])", timeout=WAIT_MS)
        assert page.is_hidden("#result-note") and page.is_hidden("#analyse-error")
    finally:
        ctx.close()
