"""`make run` / `make test` set-up (issue 12, item 14): say what the quiet pip step does, and do not
re-run `npm ci` when node_modules already matches package-lock.json."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("sha256sum") is None,
                                reason="make or sha256sum is not installed")

FAKE_NPM = """#!/usr/bin/env bash
echo "npm $*" >> "$NPM_LOG"
mkdir -p node_modules/onnxruntime-web/dist
echo '{"version": "0.0.0-test"}' > node_modules/onnxruntime-web/package.json
touch node_modules/onnxruntime-web/dist/ort.wasm.min.mjs
"""


def test_setup_announces_the_slow_install_before_pip(tmp_path: Path) -> None:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", "setup"],
                         capture_output=True, text=True, check=True).stdout
    assert "installing PyTorch and the other dependencies (about 1–2 minutes)" in out
    assert out.index("about 1–2 minutes") < out.index("pip install -q -e")


def test_npm_ci_is_skipped_when_node_modules_matches_the_lock(tmp_path: Path) -> None:
    for name in ("Makefile", "package-lock.json", "package.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install_web_assets.sh", tmp_path / "scripts")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    log = tmp_path / "npm.log"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "NPM_LOG": str(log)}

    def web() -> str:
        return subprocess.run(["make", "-C", str(tmp_path), "web"], env=env, capture_output=True, text=True,
                              check=True).stdout

    web()
    assert log.read_text().count("npm ci") == 1
    assert "npm ci skipped" in web() and log.read_text().count("npm ci") == 1  # up to date: not run again
    (tmp_path / "package-lock.json").write_text((tmp_path / "package-lock.json").read_text() + "\n")
    web()
    assert log.read_text().count("npm ci") == 2  # the lock file changed: installed again


def test_ci_checks_that_a_wheel_is_the_whole_app() -> None:
    """Issue 21 item 15: CI builds the wheel, installs it outside the repository and serves on-device inference."""
    assert "make wheel-check" in (ROOT / ".ci" / "run").read_text()
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "wheel-check"], capture_output=True, text=True, check=True)
    assert "scripts/wheel_check.sh" in out.stdout
