"""The browser tests' setup (tests/app/e2e/, tests/test_preprocess_parity_e2e.py): `hypoderm serve`'s app on a free
port in a thread (LiveServer), Debian's headless Chromium driven by Playwright (`launch_browser`), a page opened in a
phone viewport with its requests and console errors recorded (`open_page`), and one photo analysed on it
(`analyse`). E2E_MARKS: the marks of such a test module (e2e; skipped without Chromium or onnxruntime-web)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hypoderm.app.server import REPO_NODE_MODULES, create_app, find_web_assets

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# How long a browser test waits for the page to get ready or to answer: a liveness bound, not a timing. Generous,
# because CI runs on loaded machines: with two training processes on the 2-core VM, a first page load (WASM
# compile, ONNX session) once took over 60 s, the earlier bound, though the same test passed alone in 36 s.
WAIT_MS = 180_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}

E2E_MARKS = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="e2e: /usr/bin/chromium is missing (apt-get install chromium)"),
    pytest.mark.skipif(find_web_assets(REPO_NODE_MODULES) is None,
                       reason="e2e: node_modules/onnxruntime-web is missing (run scripts/install_web_assets.sh)"),
]


class LiveServer:
    """uvicorn on 127.0.0.1, a free port, in a thread; stop() shuts it down."""

    def __init__(self, model_dir: Path, wrap: Any = None) -> None:
        """`wrap`: an ASGI middleware class put around the app (e.g. one that counts bytes)."""
        import uvicorn

        self.app = create_app(model_dir, web_assets=REPO_NODE_MODULES)
        served = wrap(self.app) if wrap is not None else self.app
        self.served = served
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(served, host="127.0.0.1", port=self.port, log_level="warning"))
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


@contextmanager
def live_server(model_dir: Path, wrap: Any = None) -> Iterator[LiveServer]:
    """A LiveServer for the `with` block (a module fixture's body: `with live_server(d) as srv: yield srv`)."""
    srv = LiveServer(model_dir, wrap)
    try:
        yield srv
    finally:
        srv.stop()


@contextmanager
def launch_browser() -> Iterator[Any]:
    """Headless Chromium (CHROMIUM, CHROMIUM_ARGS) through Playwright, closed after the `with` block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser: Any, url: str, locale: str = "en-US") -> tuple[Any, Any, list[str], list[str]]:
    """A new phone-sized context and page at `url`, once the page says it is ready: (context, page, the URLs it
    requested, its console errors and uncaught exceptions)."""
    ctx = browser.new_context(locale=locale, **PHONE)
    page = ctx.new_page()
    requests: list[str] = []
    errors: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=WAIT_MS)
    return ctx, page, requests, errors


def analyse(page: Any, photo: Path) -> dict:
    """Pick `photo`, press Analyse, wait for the result: its status, where it ran, the probabilities, the skin
    fraction (the result element's data attributes)."""
    page.evaluate("document.getElementById('result').hidden = true")
    page.set_input_files("#file-input", str(photo))
    page.click("#analyse")
    page.wait_for_selector("#result:not([hidden])", timeout=WAIT_MS)
    return page.evaluate("(() => { const d = document.getElementById('result').dataset;"
                         " return {status: d.status, inference: d.inference,"
                         " probabilities: JSON.parse(d.probabilities), skin: Number(d.skinFraction)}; })()")
