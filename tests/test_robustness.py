"""Issue 13: hostile input and real phone photos. One regression test (or more) per item:

1. absurd aspect ratios are refused before allocating; one file's failure never stops a batch;
   a 500 is JSON with the security headers; exit codes tell "some files failed" from "crashed".
2. multipart uploads are parsed in memory (no temporary file, even over 1 MiB).
3. header / body read deadlines, connection and decode limits, no traceback for a client that leaves.
4. checkpoints load with weights_only: a malicious pickle does not run.
5. JPEG draft decoding: same prediction as full decoding within the parity tolerance.
6. smaller items: two image parts, a missing closing boundary, a PNG whose data ends early,
   Pillow/libtiff messages on stderr, the `Server` header, metrics.jsonl before last.pt.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hypoderm.app import admission, api, limits, server
from hypoderm.app.server import ApiError, create_app
from hypoderm.commands import serve as serve_command
from hypoderm.imaging.io import MAX_ASPECT_RATIO, ImageLoadError, ImageShapeError, load_rgb_bytes
from hypoderm.inference import OnnxPredictor, bundled_model, decode_min_size_for
from hypoderm.inference.preprocess import PreprocessSpec, decode_min_size, preprocess
from hypoderm_testkit.app import phone_like_jpeg, png_bytes, skin_png

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(model_dir: Path) -> TestClient:
    app = create_app(model_dir, limits=limits.Limits(max_upload_bytes=4 << 20, max_pixels=2_000_000))
    return TestClient(app, raise_server_exceptions=False)


def _post(client: TestClient, data: bytes, name: str = "p.png", ctype: str = "image/png"):
    return client.post("/api/v1/predict", files={"image": (name, data, ctype)})


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, raw: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw, 9))
            + _png_chunk(b"IEND", b""))


def _strip_png(width: int, height: int) -> bytes:
    """A complete, valid, tiny PNG of one colour (the 117-byte 1 x 8000 of the issue is one)."""
    return _png(width, height, (b"\x00" + b"\xc8\x96\x78" * width) * height)


# ---- 1. aspect ratio, batch errors, 500s, exit codes ---------------------------------------------

def test_extreme_aspect_ratio_refused_from_the_header() -> None:
    data = _strip_png(1, 8000)
    assert len(data) < 200
    with pytest.raises(ImageLoadError) as e:
        load_rgb_bytes(data)
    assert e.value.reason == "bad_aspect_ratio" and "1x8000" in str(e.value)
    # Refused before the pixels are decoded: a file declaring 1 x 39,999,999 with no pixel data at
    # all is an aspect-ratio error, not "truncated" (which would mean the decoder had started).
    with pytest.raises(ImageLoadError) as e:
        load_rgb_bytes(_png(1, 39_999_999, b""))
    assert e.value.reason == "bad_aspect_ratio"


def test_ordinary_panorama_is_still_accepted() -> None:
    img = load_rgb_bytes(png_bytes(Image.new("RGB", (int(MAX_ASPECT_RATIO * 20), 20), (200, 150, 120))))
    assert img.size == (400, 20)


def test_preprocess_refuses_a_strip_before_resizing() -> None:
    spec = PreprocessSpec.for_size(64)
    with pytest.raises(ImageShapeError, match="aspect ratio"):
        preprocess(Image.new("RGB", (1, 100), (200, 150, 120)), spec)  # would be resized to 73 x 7300
    assert preprocess(Image.new("RGB", (50, 100), (200, 150, 120)), spec).shape == (3, 64, 64)


def test_api_answers_a_strip_with_a_clear_422(client: TestClient) -> None:
    r = _post(client, _strip_png(1, 2000))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "bad_aspect_ratio" and "aspect ratio" in r.json()["detail"]


def test_unexpected_error_is_a_json_500_with_security_headers(model_dir: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    app = create_app(model_dir)
    state = app.state.hypoderm

    def boom(img: Image.Image, top_k: int = 3, framed: bool = False) -> dict:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(state.predictor, "predict_image", boom)
    r = _post(TestClient(app, raise_server_exceptions=False), skin_png())
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "internal_error" and "RuntimeError" in r.json()["detail"]
    for name, value in server.SECURITY_HEADERS.items():
        assert r.headers[name] == value
    assert "default-src 'self'" in r.headers["content-security-policy"]


class _FlakyPredictor:
    """Predicts normally, except that it raises on images of one width (a bug on one file)."""

    def __init__(self, inner: OnnxPredictor, bad_width: int, exc: BaseException) -> None:
        self.inner, self.bad_width, self.exc = inner, bad_width, exc
        self.metadata, self.spec = inner.metadata, inner.spec

    def predict_image(self, img: Image.Image, top_k: int = 3) -> dict:
        if img.width == self.bad_width:
            raise self.exc
        return self.inner.predict_image(img, top_k)


@pytest.mark.parametrize("exc", [RuntimeError("simulated bug"), MemoryError()])
def test_one_failing_file_does_not_stop_the_batch(model_dir: Path, tmp_path: Path, exc: BaseException) -> None:
    from hypoderm.inference.files import predict_files

    files = []
    for i, w in enumerate((80, 81, 82)):
        (tmp_path / f"{i}.png").write_bytes(skin_png((w, 60)))
        files.append(tmp_path / f"{i}.png")
    results = predict_files(_FlakyPredictor(OnnxPredictor(model_dir / "model.onnx"), 81, exc), files)
    assert [r["status"] != "error" for r in results] == [True, False, True]
    bad = results[1]
    expected = ("internal_error", "RuntimeError") if isinstance(exc, RuntimeError) else ("too_large", "memory")
    assert bad["reason"] == expected[0] and expected[1] in bad["error"]


def test_exit_codes_tell_failed_files_from_a_crash(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main
    from hypoderm.commands import predict
    from hypoderm.inference import files as predict_lib

    good, strip = tmp_path / "good.png", tmp_path / "strip.png"
    good.write_bytes(skin_png())
    strip.write_bytes(_strip_png(1, 8000))
    model = str(model_dir / "model.onnx")
    assert main(["predict", str(good), "--model", model, "--json"]) == predict.EXIT_OK == 0
    capsys.readouterr()
    assert main(["predict", str(good), str(strip), "--model", model, "--json"]) == predict.EXIT_SOME_FAILED == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["results"][0]["status"] != "error" and doc["results"][1]["status"] == "error"
    assert doc["results"][1]["reason"] == "bad_aspect_ratio"

    def crash(*args: object, **kwargs: object) -> list:
        raise RuntimeError("simulated crash outside any file")

    monkeypatch.setattr(predict_lib, "predict_files", crash)
    assert main(["predict", str(good), "--model", model]) == predict.EXIT_CRASH == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "simulated crash" in err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    for line in ("0  every file was predicted", "1  some files failed", "2  usage or model error",
                 "3  hypoderm itself"):
        assert line in out
    doc = (ROOT / "docs" / "PREDICT_SCHEMA.md").read_text()
    assert "3: hypoderm itself crashed" in doc and "bad_aspect_ratio" in doc and "internal_error" in doc


# ---- 2. uploads stay in memory ---------------------------------------------------------------------

def test_large_multipart_upload_creates_no_temporary_file(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        original = getattr(tempfile, name)

        def spy(*args: object, _original=original, _name=name, **kwargs: object) -> object:
            created.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, spy)
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))
    assert len(data) > 1 << 20  # over Starlette's 1 MiB spooling threshold
    r = _post(client, data)
    assert r.status_code == 200, r.text
    assert created == [], f"the upload touched disk via tempfile.{created}"


# ---- 3. deadlines, limits, disconnects ---------------------------------------------------------------

def _request(receive_messages: list[dict], headers: dict[str, str] | None = None):
    from starlette.requests import Request

    queue = list(receive_messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a stalled client: nothing more ever arrives
        return {"type": "http.disconnect"}

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "POST", "path": "/api/v1/predict", "headers": raw,
             "client": ("203.0.113.9", 5555), "query_string": b""}
    return Request(scope, receive)


def test_stalled_upload_gets_408_at_the_body_deadline(caplog: pytest.LogCaptureFixture) -> None:
    req = _request([{"type": "http.request", "body": b"x" * 100, "more_body": True}])
    with caplog.at_level(logging.WARNING, logger="hypoderm.serve"), pytest.raises(ApiError) as e:
        asyncio.run(admission.read_limited(req, 10_000, timeout=0.2))
    assert e.value.status == 408 and e.value.code == "upload_timeout" and "100 bytes" in e.value.detail
    assert len(caplog.records) == 1 and "203.0.113.9" in caplog.records[0].getMessage()


def test_client_disconnect_is_one_log_line_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    req = _request([{"type": "http.request", "body": b"x" * 10, "more_body": True}, {"type": "http.disconnect"}])
    with caplog.at_level(logging.WARNING, logger="hypoderm.serve"), pytest.raises(ApiError) as e:
        asyncio.run(admission.read_limited(req, 10_000, timeout=5))
    assert e.value.code == "client_disconnected"
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert "disconnected" in caplog.records[0].getMessage()


def test_decodes_are_bounded(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(model_dir, limits=limits.Limits(max_decodes=1))
    state = app.state.hypoderm
    active, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()
    original = api.decode

    def slow_decode(*args: object, **kwargs: object) -> object:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        release.wait(2)  # hold the slot while the others try to get in
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(api, "decode", slow_decode)
    data = skin_png()
    threads = [threading.Thread(target=api.predict_upload, args=(state, data, 3, False)) for _ in range(4)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(30)
    assert peak[0] == 1


def test_serve_options_have_safe_defaults() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    args = parser.parse_args([])
    opts = limits.uvicorn_options(serve_command.limits_from_args(args))
    assert opts["server_header"] is False
    assert 0 < opts["timeout_keep_alive"] <= 10 and 0 < args.limit_concurrency <= 1000
    assert opts["limit_concurrency"] > args.max_connections  # uvicorn's plain-text 503 is only a backstop
    assert 0 < opts["h11_max_incomplete_event_size"] <= 65536
    assert opts["http"].header_timeout == args.header_timeout <= 30
    assert 0 < args.body_timeout <= 120 and 1 <= args.max_decodes <= 8
    assert args.max_connections < 1024  # below the usual open-file limit
    # asyncio accepts up to `backlog` connections in one burst, before the connection cap sees them:
    # with uvicorn's 2048, a flood exhausted 1024 file descriptors in one burst.
    assert args.max_connections + opts["backlog"] <= 768
    args = parser.parse_args(["--header-timeout", "3", "--max-connections", "7", "--limit-concurrency", "5"])
    opts = limits.uvicorn_options(serve_command.limits_from_args(args))
    assert opts["http"].header_timeout == 3 and opts["http"].max_connections == 7


def test_busy_server_answers_predictions_503_but_health_200(model_dir: Path) -> None:
    app = create_app(model_dir, limits=limits.Limits(limit_concurrency=2))
    client = TestClient(app)
    app.state.hypoderm.in_flight = 2  # two predictions in progress (e.g. stalled uploads)
    r = _post(client, skin_png())
    assert r.status_code == 503 and r.json()["error"] == "server_busy"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/v1/health").status_code == 200
    app.state.hypoderm.in_flight = 0
    assert _post(client, skin_png()).status_code == 200


def test_uploads_held_in_memory_are_bounded_together(model_dir: Path) -> None:
    state = create_app(model_dir, limits=limits.Limits(max_upload_bytes=1000, max_buffered_bytes=1500)).state.hypoderm
    first, second = admission.Budget(state), admission.Budget(state)
    asyncio.run(admission.read_limited(_request([{"type": "http.request", "body": b"x" * 900}]), 1000, 5, first))
    with pytest.raises(ApiError) as e:
        asyncio.run(admission.read_limited(_request([{"type": "http.request", "body": b"x" * 900}]), 1000, 5, second))
    assert e.value.status == 503 and e.value.code == "server_busy"
    first.release()
    second.release()
    assert state.buffered_bytes == 0


@pytest.fixture(scope="module")
def live_server(model_dir: Path):
    """The app on a real uvicorn (with serve's options) in a thread: 0.5 s header deadline, 3 connections."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    args = parser.parse_args(["--header-timeout", "0.5", "--max-connections", "3"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = limits.uvicorn_options(serve_command.limits_from_args(args))
    config = uvicorn.Config(create_app(model_dir), host="127.0.0.1", port=port, **opts)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(10)


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_half_sent_headers_are_closed_at_the_deadline(live_server: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hypoderm.serve"), \
            socket.create_connection(("127.0.0.1", live_server), timeout=15) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    assert closed  # the server hung up; without the deadline recv() would wait the full 15 s and fail
    assert any("headers not complete" in r.getMessage() for r in caplog.records)


def test_no_server_header_and_connection_cap(live_server: int) -> None:
    with socket.create_connection(("127.0.0.1", live_server), timeout=15) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = _recv_all(sock).split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200") and b"\r\nserver:" not in head
    held = [socket.create_connection(("127.0.0.1", live_server), timeout=15) for _ in range(3)]
    try:
        extra = socket.create_connection(("127.0.0.1", live_server), timeout=15)
        extra.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _recv_all(extra) == b""  # closed at once, no answer
        extra.close()
    finally:
        for s in held:
            s.close()


# ---- 4. checkpoints do not run code ------------------------------------------------------------------

class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_does_not_execute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from hypoderm.checkpoint import CheckpointError, load_checkpoint
    from hypoderm.cli import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "hypoderm-checkpoint/1", "payload": _Exploit(marker)}, evil)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(evil)
    assert not marker.exists()
    img = tmp_path / "a.png"
    img.write_bytes(skin_png())
    assert main(["predict", str(img), "--model", str(evil)]) == 2
    assert "could run code" in capsys.readouterr().err and not marker.exists()


# ---- 5. JPEG draft decoding ---------------------------------------------------------------------------

# Parity tolerance for draft decoding (JPEG DCT scaling to >= 2 x resize_size, then the spec's resize):
# the largest absolute change of any class probability for one photo, and the mean over a set.
# Measured on the 311 real development photos upscaled to 4032 px with the bundled model
# (benchmarks/robustness/README.md): max 0.123, p99 0.054, mean 0.004, top-1 unchanged for all 311.
# For scale, an invisible change (re-encoding at JPEG quality 85) gives max 0.009, mean 0.001. DCT
# scaling is a box pre-filter before the bilinear resize, so the input is slightly softer; the
# tolerances bound what was measured with a margin, and top-1 must not change unless the full-
# resolution prediction was itself a near-tie.
# Issue 29 (the square rule: the full decode is box-reduced by a whole factor, e.g. 10 where DCT scaling gives 8)
# moved the means these tests take: 0.0136 on the synthetic 3024 x 4032 photo below and 0.0123 over the 20 real
# photos of test_draft_parity_on_real_photos (both measured with the bundled model), hence a mean bound of 0.02.
DRAFT_PARITY_MAX = 0.15
DRAFT_PARITY_MEAN = 0.02
# top-1 minus top-2 probability under which a label change is tolerated. The ImageNet-started bundled model
# (2026-12-06) is a little more sensitive to the softer draft decode: over the 20 real photos below, mean change
# 0.013, largest 0.083, on a photo whose full-decode margin was 0.123 and whose label flipped (normal_skin ->
# vitiligo); 0.1 became 0.15.
NEAR_TIE = 0.15


@pytest.fixture(scope="module")
def bundled() -> OnnxPredictor:
    if not bundled_model().is_file():
        pytest.skip("no bundled model")
    return OnnxPredictor(bundled_model(), threads=1)


def _parity(full: dict, draft: dict) -> float:
    """The largest probability change; asserts it is within DRAFT_PARITY_MAX and top-1 is kept."""
    diff = max(abs(full["probabilities"][k] - draft["probabilities"][k]) for k in full["probabilities"])
    assert diff <= DRAFT_PARITY_MAX, diff
    top = full["top_k"]
    if len(top) > 1 and top[0]["probability"] - top[1]["probability"] > NEAR_TIE:
        assert draft["top_k"][0]["label"] == top[0]["label"]
    return diff


@pytest.mark.parametrize("size,seed", [((4032, 3024), 0), ((3024, 4032), 1), ((2000, 1500), 2)])
def test_draft_decoding_matches_full_decoding(bundled: OnnxPredictor, size: tuple[int, int], seed: int) -> None:
    data = phone_like_jpeg(*size, seed)
    full_img = load_rgb_bytes(data)
    min_size = decode_min_size_for(bundled.spec)  # what predict and serve use
    draft_img = load_rgb_bytes(data, min_size=min_size)
    assert min(draft_img.size) >= min_size >= max(decode_min_size(bundled.spec), 2 * bundled.spec.resize_size)
    assert draft_img.width * draft_img.height <= 0.25 * full_img.width * full_img.height  # really reduced
    assert draft_img.info["hypoderm_source_size"] == full_img.size
    assert _parity(bundled.predict_image(full_img), bundled.predict_image(draft_img)) <= DRAFT_PARITY_MEAN


def test_small_jpeg_decodes_bit_identically(bundled: OnnxPredictor) -> None:
    min_size = decode_min_size_for(bundled.spec)  # 292 for the bundled 128 px model
    data = phone_like_jpeg(560, 420, 3)  # shorter side < 2 x 292: no DCT scale keeps it >= 292
    a = np.asarray(load_rgb_bytes(data))
    b = np.asarray(load_rgb_bytes(data, min_size=min_size))
    assert 2 * min_size > 420 and np.array_equal(a, b)


def test_server_reports_the_photo_size_not_the_reduced_decode(model_dir: Path) -> None:
    app = create_app(model_dir, limits=limits.Limits(max_upload_bytes=8 << 20))
    r = _post(TestClient(app), phone_like_jpeg(2000, 1500, 4), "p.jpg", "image/jpeg")
    assert r.status_code == 200 and r.json()["image"] == {"width": 2000, "height": 1500}


@pytest.mark.realdata
def test_draft_parity_on_real_photos(real_data_dir: Path, bundled: OnnxPredictor) -> None:
    files = sorted(real_data_dir.rglob("*.jpg"))[::15][:20]
    diffs = []
    for f in files:
        img = Image.open(f).convert("RGB")
        scale = 4032 / max(img.size)
        buf = io.BytesIO()
        img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS).save(buf, "JPEG", quality=90)
        full = bundled.predict_image(load_rgb_bytes(buf.getvalue()))
        min_size = decode_min_size_for(bundled.spec)
        draft = bundled.predict_image(load_rgb_bytes(buf.getvalue(), min_size=min_size))
        diffs.append(_parity(full, draft))
    assert np.mean(diffs) <= DRAFT_PARITY_MEAN


# ---- 6. smaller items ---------------------------------------------------------------------------------

def _multipart(parts: list[bytes], boundary: str = "XyZb0undary", close: bool = True) -> tuple[bytes, str]:
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p{i}.png\"\r\n"
                    f"Content-Type: image/png\r\n\r\n".encode() + p + b"\r\n" for i, p in enumerate(parts))
    if close:
        body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_two_image_parts_are_a_clear_400(client: TestClient) -> None:
    body, ctype = _multipart([skin_png(seed=1), skin_png(seed=2)])
    r = client.post("/api/v1/predict", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400 and r.json()["error"] == "duplicate_image" and "exactly one" in r.json()["detail"]


def test_missing_closing_boundary_is_reported(client: TestClient) -> None:
    body, ctype = _multipart([skin_png()], close=False)
    r = client.post("/api/v1/predict", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400 and r.json()["error"] == "bad_multipart"
    assert "closing boundary" in r.json()["detail"]


def test_png_whose_data_ends_early_is_truncated(client: TestClient) -> None:
    width, height = 16, 16
    data = _png(width, height, (b"\x00" + b"\xc8\x96\x78" * width) * (height // 2))  # valid zlib, half the rows
    with pytest.raises(ImageLoadError) as e:
        load_rgb_bytes(data)
    assert e.value.reason == "truncated"
    r = _post(client, data)
    assert r.status_code == 422 and r.json()["error"] == "truncated_image"
    interlaced = io.BytesIO()
    Image.new("RGB", (33, 17), (1, 2, 3)).save(interlaced, "PNG", interlace=True)
    assert load_rgb_bytes(interlaced.getvalue()).size == (33, 17)  # complete files, every layout, still load


def test_decoder_messages_never_reach_stderr(tmp_path: Path) -> None:
    """libtiff prints from C and Pillow logs at WARNING: neither may reach the user's terminal."""
    script = tmp_path / "decode.py"
    script.write_text(
        "import io, random, sys\n"
        "from PIL import Image\n"
        "from hypoderm.imaging.io import ImageLoadError, load_rgb_bytes\n"
        "rng = random.Random(0)\n"
        "bases = []\n"
        "for comp in ('tiff_deflate', 'tiff_lzw', 'raw', 'jpeg', 'packbits'):\n"
        "    buf = io.BytesIO(); Image.new('RGB', (32, 24), (200, 100, 50)).save(buf, 'TIFF', compression=comp)\n"
        "    bases.append(buf.getvalue())\n"
        "exif = Image.Exif(); exif[0x0112] = 6; raw = bytearray(exif.tobytes()); raw[-3:] = b'\\xff' * 3\n"
        "buf = io.BytesIO(); Image.new('RGB', (16, 8)).save(buf, 'JPEG', exif=bytes(raw))\n"
        "bases.append(buf.getvalue())\n"
        "cases = []\n"
        "for i in range(300):\n"
        "    d = bytearray(rng.choice(bases))\n"
        "    for _ in range(rng.randint(1, 6)):\n"
        "        d[rng.randrange(len(d))] = rng.randrange(256)\n"
        "    cases.append(bytes(d))\n"
        "def decode(d):\n"
        "    try:\n"
        "        load_rgb_bytes(d)\n"
        "    except ImageLoadError:\n"
        "        pass\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(4) as pool:  # the server and predict decode in several threads\n"
        "    list(pool.map(decode, cases))\n")
    import hypoderm

    env = {"PYTHONPATH": str(Path(hypoderm.__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-W", "default", str(script)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == ""


def test_metrics_row_is_written_before_last_checkpoint(image_folder: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from hypoderm.engine import train as train_mod
    from hypoderm.engine.config import TrainConfig

    real_save = train_mod.save_atomic

    def killed_while_saving_last(obj: object, path: Path) -> Path:
        if Path(path).name == "last.pt":
            raise KeyboardInterrupt("killed between the metrics row and last.pt")
        return real_save(obj, path)

    monkeypatch.setattr(train_mod, "save_atomic", killed_while_saving_last)
    cfg = TrainConfig(data=str(image_folder), model="hypodermnet", folds=3, size=32, epochs=1, batch_size=4,
                      outlier_exposure=0.0, out=str(tmp_path / "run"), progress=False, device="cpu", warmup_epochs=0.5)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
