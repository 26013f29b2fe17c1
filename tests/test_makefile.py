"""`make run` / `make test` set-up (issue 12, item 14): say what the quiet pip step does, and do not
re-run `npm ci` when node_modules already matches package-lock.json. `make run` installs only the app's dependencies
(issue 29: no PyTorch), `make setup`/`make test` everything."""

from __future__ import annotations

import os
import re
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


# Stands in for python3: logs each call; `-m venv DIR` makes DIR/bin/python and DIR/bin/hypoderm, which log too.
# With PIP_PYTHON_FAILS set, `-m pip --python ...` fails as with a pip older than 22.3.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "python3 $*" >> "$LOG"
if [ "$1 $2" = "-m pip" ] && [ -n "${PIP_PYTHON_FAILS:-}" ]; then exit 1; fi
if [ "$1 $2" = "-m venv" ]; then
  for a in "$@"; do dir=$a; done
  mkdir -p "$dir/bin"
  printf '#!/usr/bin/env bash\necho "venv/bin/python $*" >> "$LOG"\n' > "$dir/bin/python"
  printf '#!/usr/bin/env bash\necho "venv/bin/hypoderm $*" >> "$LOG"\n' > "$dir/bin/hypoderm"
  chmod +x "$dir/bin/python" "$dir/bin/hypoderm"
fi
"""


def fake_checkout(tmp_path: Path, **env: str) -> tuple[Path, Path, dict[str, str]]:
    """(a folder with the Makefile and pyproject.toml, a fake python3, the environment whose $LOG it writes)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Makefile", "pyproject.toml"):  # no package-lock.json: `make web` only says so
        shutil.copy(ROOT / name, repo / name)
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return repo, python, {**os.environ, "LOG": str(tmp_path / "calls.log"), **env}


def make(repo: Path, python: Path, env: dict[str, str], target: str) -> list[str]:
    """The calls of python, the venv's python and hypoderm that `make target` made."""
    log = Path(env["LOG"])
    before = log.read_text().splitlines() if log.exists() else []
    subprocess.run(["make", "-C", str(repo), f"PYTHON={python}", target], env=env, capture_output=True, text=True,
                   check=True)
    return log.read_text().splitlines()[len(before):]


def test_make_run_installs_the_app_alone_without_pytorch_and_make_setup_adds_the_rest(tmp_path: Path) -> None:
    repo, python, env = fake_checkout(tmp_path)
    calls = make(repo, python, env, "run")
    venv_python = repo / ".venv" / "bin" / "python"
    assert calls == ["python3 -m venv --without-pip .venv", "python3 -m pip --python .venv/bin/python --version",
                     "python3 -m pip --python .venv/bin/python install -q --no-compile -e .",
                     "venv/bin/hypoderm serve --host 127.0.0.1 --port 8000"]
    assert venv_python.is_file()
    assert make(repo, python, env, "run") == ["venv/bin/hypoderm serve --host 127.0.0.1 --port 8000"]  # installed
    calls = make(repo, python, env, "setup")
    assert calls[0] == "python3 -m venv .venv" and calls[-1] == "venv/bin/python -m pip install -q -e .[test]"
    assert make(repo, python, env, "run") == ["venv/bin/hypoderm serve --host 127.0.0.1 --port 8000"]


def test_make_run_after_make_setup_installs_nothing(tmp_path: Path) -> None:
    repo, python, env = fake_checkout(tmp_path)
    make(repo, python, env, "setup")
    assert make(repo, python, env, "run") == ["venv/bin/hypoderm serve --host 127.0.0.1 --port 8000"]


def test_make_run_gives_the_venv_its_own_pip_when_python3s_pip_cannot_install_into_it(tmp_path: Path) -> None:
    repo, python, env = fake_checkout(tmp_path, PIP_PYTHON_FAILS="1")
    assert make(repo, python, env, "run") == [
        "python3 -m venv --without-pip .venv", "python3 -m pip --python .venv/bin/python --version",
        "python3 -m venv .venv", "venv/bin/python -m pip install -q --no-compile -e .",
        "venv/bin/hypoderm serve --host 127.0.0.1 --port 8000"]


def test_the_app_dependencies_are_not_the_training_stack() -> None:
    """pyproject's core dependencies (what `make run` installs) hold no training package; `test` pulls in `train`."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in project["dependencies"]}
    train = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in project["optional-dependencies"]["train"]}
    assert {"torch", "torchvision", "scikit-learn", "scipy", "matplotlib"} <= train
    assert not core & train
    assert {"onnxruntime", "fastapi", "uvicorn", "httptools", "python-multipart", "brotli"} <= core
    assert "hypoderm[train]" in project["optional-dependencies"]["test"]


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
