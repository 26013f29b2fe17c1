"""Fast seeded fuzz of the API and the CLI (issues 13 and 23): ~200 hostile inputs each from
hypoderm_testkit.fuzz, Grad-CAM asked for, odd folder entries for the CLI, and malformed model
sidecars. Every answer must be a 200 or a clear 4xx JSON error (API), a prediction or a per-file
error with a known reason (CLI), a refusal or strict JSON (sidecars): 0 crashes, 0 5xx, no
`internal_error`. The full >= 10,000-case runs are benchmarks/robustness/fuzz_api.py and fuzz_cli.py."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hypoderm.app.server import Limits, create_app
from hypoderm_testkit.fuzz import fuzz_cases
from hypoderm_testkit.fuzz_cli import make_special, sidecar_cases

FAST_CASES = 200
# pytest resets the warning filters per test, so Pillow's "Corrupt EXIF data" and TIFF tag warnings
# (filtered process-wide by hypoderm.imaging.io in real runs) would fill the summary; stderr staying
# clean is tested in a subprocess (test_robustness.py::test_decoder_messages_never_reach_stderr).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")
PREDICT_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "predict.schema.json"


def _known_reasons() -> set[str]:
    """The schema's error reasons, less `internal_error` (a bug: the fuzz must never produce one)."""
    enum = json.loads(PREDICT_SCHEMA.read_text())["$defs"]["FileError"]["properties"]["reason"]["enum"]
    assert enum, "no error reason enum in docs/predict.schema.json"
    return set(enum) - {"internal_error"}


def test_api_fuzz_gives_only_200_or_clear_4xx(model_dir: Path) -> None:
    app = create_app(model_dir, limits=Limits(max_upload_bytes=2 << 20, max_pixels=4_000_000))
    client = TestClient(app, raise_server_exceptions=False)
    statuses: Counter[str] = Counter()
    for i, case in enumerate(fuzz_cases(FAST_CASES, seed=13)):
        url = "/api/v1/predict?gradcam=true"  # as the page asks
        if case.body is not None:
            r = client.post(url, content=case.body, headers={"Content-Type": case.content_type})
        elif i % 3 == 0:  # a raw image body
            r = client.post(url, content=case.data, headers={"Content-Type": "application/octet-stream"})
        else:
            r = client.post(url, files={"image": ("photo.jpg", case.data, "image/jpeg")})
        where = f"case {i} ({case.kind}): {r.status_code} {r.text[:200]}"
        assert r.status_code == 200 or 400 <= r.status_code < 500, where
        assert r.headers["content-type"].startswith("application/json"), where
        body = r.json()
        if r.status_code != 200:
            assert body["error"] and body["detail"] and body["status"] == r.status_code, where
        statuses[f"{r.status_code} {body.get('error', 'ok')}"] += 1
    assert client.get("/api/v1/health").json()["status"] == "ok"
    assert sum(n for s, n in statuses.items() if s.startswith("200")) > 10  # the valid images still work


def test_cli_fuzz_gives_a_result_or_a_known_error_per_file(model_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    kinds = {}
    for i, case in enumerate(fuzz_cases(FAST_CASES, seed=31, multipart=False, specials=True)):
        name = f"{i:04d}_{case.kind}.{('jpg', 'png', 'gif', 'tif', 'webp', 'bmp', 'heic')[i % 7]}"
        if case.special:
            make_special(folder / name, case.special)
        else:
            (folder / name).write_bytes(case.data)
        kinds[name] = case.kind
    rc = main(["predict", str(folder), "--model", str(model_dir / "model.onnx"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1  # some files failed, nothing crashed
    assert len(doc["results"]) == len(kinds)
    known = _known_reasons()
    for r in doc["results"]:
        if r["status"] == "error":
            assert r["reason"] in known, r
            assert r["error"], r
        elif kinds[Path(r["file"]).name] == "not_a_file":
            raise AssertionError(f"a folder entry that is not a file was predicted: {r}")
        else:
            assert r["status"] in ("ok", "uncertain", "not_skin") and abs(sum(r["probabilities"].values()) - 1) < 1e-6
    assert sum(r["status"] != "error" for r in doc["results"]) > 10


def _strict_json(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_sidecar_fuzz_is_refused_or_answered_in_json(model_dir: Path, tmp_path: Path) -> None:
    """Malformed model.json files: `predict` either refuses the model (exit 2, one line on stderr, nothing on
    stdout) or answers in strict JSON (no NaN); never exit 3, never a traceback."""
    from hypoderm.cli import main

    onnx = tmp_path / "model" / "model.onnx"
    onnx.parent.mkdir()
    shutil.copy(model_dir / "model.onnx", onnx)
    photo = tmp_path / "p.png"
    photo.write_bytes(next(c.data for c in fuzz_cases(50, seed=2, bombs=False) if c.kind == "valid"))
    base = json.loads((model_dir / "model.json").read_text())
    outcomes: Counter[int] = Counter()
    for desc, text in sidecar_cases(base, 80, seed=23):
        onnx.with_suffix(".json").write_bytes(text)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["predict", str(photo), "--model", str(onnx), "--json"])
        outcomes[rc] += 1
        where = f"{desc}: exit {rc}, stdout {out.getvalue()[:200]!r}, stderr {err.getvalue()[-500:]!r}"
        assert rc in (0, 1, 2) and "Traceback" not in err.getvalue(), where
        if rc == 2:
            assert out.getvalue() == "" and len(err.getvalue().strip().splitlines()) == 1, where
        else:
            results = _strict_json(out.getvalue())["results"]  # type: ignore[index]
            assert len(results) == 1 and results[0].get("reason") != "internal_error", where
    assert outcomes[2] > 20 and outcomes[0] + outcomes[1] > 3  # both kinds occur
