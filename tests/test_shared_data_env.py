"""Issue 29: the real-data tests find the data through one environment variable, HYPODERM_SHARED (a folder
holding data/; default ../shared beside the repository), read in one place (tests/conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _conftest_paths(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "HYPODERM_SHARED"}
    if env_value is not None:
        env["HYPODERM_SHARED"] = env_value
    code = "import conftest; print(conftest.REAL_DATA); print(conftest.MULTISOURCE)"
    out = subprocess.run([sys.executable, "-c", code], cwd=TESTS, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_the_variable_names_the_shared_folder(tmp_path: Path) -> None:
    assert _conftest_paths(str(tmp_path)) == [str(tmp_path / "data" / "hypopigmented"),
                                               str(tmp_path / "data" / "multisource" / "index.csv")]
    default = ROOT.parent / "shared"
    assert _conftest_paths(None)[0] == str(default / "data" / "hypopigmented")
    assert _conftest_paths("")[0] == str(default / "data" / "hypopigmented")  # empty: the default


def test_no_test_builds_its_own_path_to_the_shared_folder() -> None:
    """Every real-data test takes its path from conftest (REAL_DATA, MULTISOURCE, the fixtures)."""
    own = re.compile(r"""/\s*["']shared["']|["']\.\./shared/data""")
    offenders = [str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py")
                 if p.name not in ("conftest.py", Path(__file__).name) and own.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_real_data_tests_skip_cleanly_when_the_folder_is_empty(tmp_path: Path) -> None:
    env = {**os.environ, "HYPODERM_SHARED": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          "tests/inference/test_ood.py::test_real_photos_pass_the_skin_rule"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 skipped" in out.stdout and f"real data not found at {tmp_path}" in out.stdout
