"""Issue 29: `train --help` shows the defaults of the flags people change first; `hypoderm models` counts
parameters for the bundled model's number of classes and says so."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from hypoderm.cli import main


def _help(words: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([*words, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", [["train"], ["cv"]])
def test_training_help_shows_the_defaults(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.engine.config import TrainConfig

    out = _help(command, capsys)
    d = TrainConfig(data="x")
    for flag, value in (("--epochs EPOCHS", d.epochs), ("--seed SEED", d.seed),
                        ("--batch-size BATCH_SIZE", d.batch_size), ("--lr LR", d.lr)):
        shown = out.split(flag, 2)[-1]  # the option's own line, after the usage block
        assert f"(default {value})" in shown[:120], (flag, shown[:120])


def test_models_counts_for_the_bundled_model_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.commands.models import bundled_class_count
    from hypoderm.models.registry import count_parameters, create_model

    md = json.loads((resources.files("hypoderm") / "assets" / "model.json").read_text(encoding="utf-8"))
    k = len(md["class_names"])
    assert bundled_class_count() == k == 3
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"Parameters counted with a {k}-class head (the bundled model's)")
    assert f"{count_parameters(create_model('mnv3s', num_classes=k)):,}" in out
    assert main(["models", "--classes", "5"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("Parameters counted with a 5-class head;") and "bundled" not in out
    assert "1,522,981" in out  # mnv3s with 5 classes (tests/commands/test_bench_cli.py)
    assert f"(default {k}: the bundled model's)" in _help(["models"], capsys)


@pytest.mark.parametrize("command", ["train", "cv", "compare", "export"])
def test_every_flag_default_is_the_dataclass_default(command: str) -> None:
    """The flags read their defaults from TrainConfig / ExportOptions (hypoderm.commands.options): what a command
    parses without a flag is what the library would use without the option."""
    import dataclasses

    from hypoderm.cli import _parser
    from hypoderm.engine.config import TrainConfig
    from hypoderm.export.bundle import ExportOptions

    cls: type = ExportOptions if command == "export" else TrainConfig
    argv = ["ckpt.pt", "--out", "m.onnx"] if command == "export" else ["--data", "d", "--out", "o"]
    parsed = vars(_parser((command,)).parse_args(argv))
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    shared = set(parsed) & set(defaults) - {"out"}
    assert len(shared) >= (14 if command == "export" else 30)
    assert {k: parsed[k] for k in shared} == {k: defaults[k] for k in shared}


def test_serve_options_default_to_the_limits_and_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 30: `serve`'s options take their defaults from hypoderm.app.limits.Limits, and its help shows them."""
    import argparse

    from hypoderm.app.limits import Limits
    from hypoderm.commands import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    d = Limits()
    assert serve.limits_from_args(parser.parse_args([])) == d
    out = _help(["serve"], capsys)
    for flag, value in (("--max-upload-mb MAX_UPLOAD_MB", "10"), ("--max-pixels MAX_PIXELS", d.max_pixels),
                        ("--max-decodes MAX_DECODES", d.max_decodes), ("--body-timeout BODY_TIMEOUT", "60"),
                        ("--max-uploads-per-client MAX_UPLOADS_PER_CLIENT", d.max_uploads_per_client),
                        ("--max-buffered-mb MAX_BUFFERED_MB", "256"), ("--max-connections MAX_CONNECTIONS", 512)):
        shown = out.split(flag, 2)[-1]  # the option's own line, after the usage block
        assert f"(default {value})" in shown[:200], (flag, shown[:200])
