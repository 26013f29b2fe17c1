"""The plain install has no training stack (issue 29): `make run` and `pip install hypoderm` install only what `serve`
and `predict` (ONNX) import. Here the training packages are blocked in a fresh interpreter (a meta path finder that
answers "no module named torch", as on an install without the `train` extra): `serve` and `predict` still work, every
`--help` answers, and each command that needs the training stack stops with exit code 2 and the install command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm.cli import COMMANDS, NEEDS_TRAIN_EXTRA, TRAIN_EXTRA_MODULES

SRC = Path(__file__).resolve().parents[2] / "src"

# Runs each argv of argv[1] (JSON) through hypoderm.cli.main with the modules of argv[2] (JSON) not importable, and
# prints [exit code, stdout, stderr] for each, and which blocked modules got loaded anyway.
RUNNER = """
import contextlib, io, json, sys
calls, blocked = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from hypoderm.cli import main
results = []
for argv in calls:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    results.append([code, out.getvalue(), err.getvalue()])
try:
    import torch
    torch_importable = True
except ModuleNotFoundError:
    torch_importable = False
loaded = sorted({m.split(".")[0] for m in sys.modules} & blocked)
print(json.dumps({"results": results, "loaded": loaded, "torch_importable": torch_importable}))
"""

# the least each training command needs to get past argparse (the extras are checked after the options)
TRAIN_ARGV = {
    ("models",): [], ("bench",): [], ("data", "audit"): ["photos"], ("data", "split"): ["photos"],
    ("train",): ["--data", "photos"], ("evaluate",): ["best.pt"], ("cv",): ["--data", "photos"],
    ("compare",): ["--data", "photos", "--out", "out"], ("export",): ["best.pt", "--out", "out"],
}


def run_without(modules: tuple[str, ...], calls: list[list[str]], cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(calls), json.dumps(list(modules))], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert not got["torch_importable"] or "torch" not in modules  # the block works: torch really is missing
    return got


def test_every_training_command_says_how_to_install_the_training_extras(tmp_path: Path) -> None:
    assert set(TRAIN_ARGV) == NEEDS_TRAIN_EXTRA  # a new training command is checked here too
    calls = [[*words, *argv] for words, argv in TRAIN_ARGV.items()]
    got = run_without(("torch", "torchvision"), calls, tmp_path)
    for (words, _), (code, out, err) in zip(TRAIN_ARGV.items(), got["results"], strict=True):
        command = " ".join(words)
        assert code == 2, (command, out, err)
        assert err.strip() == (f"hypoderm {command} needs the training extras: pip install 'hypoderm[train]' "
                               "(in a checkout: make setup); not installed: torch, torchvision"), command
        assert "Traceback" not in err
    assert got["loaded"] == []
    assert not (tmp_path / "out").exists()  # stopped before doing anything


def test_one_missing_training_package_is_enough_to_stop(tmp_path: Path) -> None:
    """torch alone installed (without scikit-learn, say) would fail an hour into training; it stops at once."""
    got = run_without(("sklearn",), [["train", "--data", "photos"]], tmp_path)
    code, _, err = got["results"][0]
    assert code == 2 and err.strip().endswith("not installed: sklearn")


def test_every_help_answers_without_the_training_extras(tmp_path: Path) -> None:
    got = run_without(TRAIN_EXTRA_MODULES, [[*words, "--help"] for words in COMMANDS], tmp_path)
    for words, (code, out, err) in zip(COMMANDS, got["results"], strict=True):
        assert code == 0 and out.startswith(f"usage: hypoderm {' '.join(words)} "), (words, err)
    assert got["loaded"] == []


def test_predict_runs_the_onnx_model_without_the_training_extras_and_a_checkpoint_says_why_not(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    (tmp_path / "best.pt").write_bytes(b"not read: torch is missing")
    got = run_without(TRAIN_EXTRA_MODULES, [["predict", "photo.jpg", "--json"],
                                            ["predict", "photo.jpg", "--model", "best.pt"]], tmp_path)
    (code, out, err), (pt_code, _, pt_err) = got["results"]
    assert code == 0, err
    assert [r["status"] for r in json.loads(out)["results"]] != ["error"]
    assert pt_code == 2 and "Traceback" not in pt_err
    assert pt_err.strip() == ("hypoderm predict needs the training extras for a .pt checkpoint: pip install "
                              "'hypoderm[train]' (in a checkout: make setup), or give it the exported .onnx model; "
                              "not installed: torch")
    assert got["loaded"] == []


def test_the_app_serves_without_the_training_extras(tmp_path: Path) -> None:
    pytest.importorskip("httpx")
    code = ("import sys\n"
            "from fastapi.testclient import TestClient\n"
            "from hypoderm.app.server import create_app\n"
            f"client = TestClient(create_app(cache_dir=__import__('pathlib').Path({str(tmp_path / 'cache')!r})))\n"
            "health = client.get('/api/v1/health')\n"
            "page = client.get('/')\n"
            "print(health.status_code, page.status_code)\n")
    runner = RUNNER.replace("from hypoderm.cli import main", code + "main = lambda argv: 0")
    proc = subprocess.run([sys.executable, "-c", runner, "[]", json.dumps(list(TRAIN_EXTRA_MODULES))], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "200 200"
    assert json.loads(proc.stdout.splitlines()[-1])["loaded"] == []
