"""The `hypoderm` command line itself (issue 21 item 9): every `--help` answers without importing torch, command
groups (`hypoderm data`) have a help of their own, and a wrong model name is said before any photo is decoded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hypoderm.cli import COMMANDS, main

SRC = Path(__file__).resolve().parents[2] / "src"


def test_help_of_every_command_imports_no_torch() -> None:
    """`hypoderm train --help` took 4-6 s importing torch to print its options; now no `--help` imports it."""
    code = (
        "import contextlib, io, json, sys\n"
        "from hypoderm.cli import COMMANDS, main\n"
        "out = {}\n"
        "for words in COMMANDS:\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        try:\n"
        "            main([*words, '--help'])\n"
        "        except SystemExit as e:\n"
        "            out[' '.join(words)] = [e.code, buf.getvalue().splitlines()[0]]\n"
        "print(json.dumps({'help': out, 'torch': sorted(m for m in sys.modules if m.split('.')[0] == 'torch')}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert set(got["help"]) == {" ".join(w) for w in COMMANDS}
    for command, (code_, first) in got["help"].items():
        assert code_ == 0 and first.startswith(f"usage: hypoderm {command} "), (command, first)
    assert got["torch"] == []


def test_a_command_group_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`hypoderm data --help` said "unknown command 'data --help'"."""
    assert main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hypoderm data COMMAND") and all(c in out for c in ("data audit", "data split",
                                                                                      "data import scin"))
    assert "\n  train " not in out
    assert main(["data", "import", "-h"]) == 0 and "data import scin" in capsys.readouterr().out
    assert main(["data"]) == 2 and "usage: hypoderm data COMMAND" in capsys.readouterr().err  # no command given
    assert main(["data", "nosuch"]) == 2
    assert "unknown command 'data nosuch'; valid commands: data audit, data split" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "cv"])
def test_an_unknown_model_is_said_before_any_photo_is_decoded(command: str, image_folder: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.engine import fold

    def decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("photos were decoded before the model name was checked")

    monkeypatch.setattr(fold, "readable_index", decode)
    monkeypatch.setattr("hypoderm.engine.cache.DecodedCache.get", decode)
    assert main([command, "--data", str(image_folder), "--model", "nosuch", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nosuch'; valid models:" in err and "hypodermnet" in err and "Traceback" not in err


def test_every_user_error_is_a_hypoderm_error_and_is_said_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """One error base (hypoderm.errors.HypodermError, exit code 2 unless it says otherwise), caught once in
    cli.main: `hypoderm <command>: error: <message>`, no traceback. ApiError is an HTTP answer, not a CLI error."""
    import ast
    import importlib

    from hypoderm.errors import HypodermError

    found = {}
    for path in sorted((SRC / "hypoderm").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and node.name != "ApiError":
                cls = getattr(importlib.import_module(module), node.name)
                if issubclass(cls, BaseException):  # not hypoderm.app.api.Error, the JSON answer's model
                    found[f"{module}.{node.name}"] = cls
    assert len(found) >= 15
    assert [name for name, cls in found.items() if not issubclass(cls, HypodermError)] == []
    assert main(["models", "--num-classes", "0"]) == 2
    assert capsys.readouterr().err.strip() == "hypoderm models: error: --num-classes must be >= 1"


def test_own_warnings_are_one_line_for_people(image_folder: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A class with fewer photos than folds printed Python's "/path/fold.py:102: UserWarning: ..." and the source
    line under it; hypoderm's own warnings are now "hypoderm train: warning: ..." (others keep Python's form)."""
    import warnings

    for extra in sorted((image_folder / "c").iterdir())[1:]:
        extra.unlink()  # class c keeps one photo: fewer groups than the 3 folds
    before = warnings.showwarning
    rc = main(["train", "--data", str(image_folder), "--folds", "3", "--size", "32", "--epochs", "1", "--max-steps",
               "1", "--batch-size", "4", "--no-progress", "--outlier-exposure", "0", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert "hypoderm train: warning: class(es) with fewer groups than folds" in err, err
    assert "UserWarning" not in err and "make_split(" not in err
    assert warnings.showwarning is before  # put back when the command ends
    assert rc == 0  # a warning, not a refusal: the run goes on
