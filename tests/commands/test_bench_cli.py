"""`hypoderm bench`, `hypoderm models` and the command dispatcher."""

from __future__ import annotations

import json

import pytest

from hypoderm import cli
from hypoderm.models import count_parameters, create_model
from hypoderm.study.bench import count_flops, parse_models


def test_bench_writes_one_table_for_all_models(tmp_path, capsys):
    out = tmp_path / "bench.json"
    csv_out = tmp_path / "bench.csv"
    rc = cli.main(["bench", "--models", "mnv3s,hypodermnet", "--size", "64", "--runs", "2", "--warmup", "1",
                   "--json", str(out), "--csv", str(csv_out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mnv3s" in printed and "hypodermnet" in printed and "threads=1" in printed
    result = json.loads(out.read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["mnv3s"]["params"] == count_parameters(create_model("mnv3s", num_classes=2))
    assert rows["hypodermnet"]["params"] < 0.75 * rows["mnv3s"]["params"]
    assert rows["hypodermnet"]["receptive_field"] > rows["mnv3s"]["receptive_field"]
    for r in rows.values():
        assert r["flops"] == 2 * r["macs"] > 0
        assert r["torch_ms_median"] > 0 and r["ort_ms_median"] > 0
        assert r["torch_ms_p90"] >= r["torch_ms_median"]
    assert csv_out.read_text().splitlines()[0].startswith("threads,model,params")


def test_flop_count_matches_hand_count_for_a_linear_layer():
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(x)

    # 8 output channels x 16 x 16 positions x (3 x 3 x 3) MACs, x2 for FLOPs
    assert count_flops(Tiny(), 16) == 2 * 8 * 16 * 16 * 27


def test_presets_expand():
    assert len(parse_models("ablation")) == 8
    assert parse_models("paper")[0] == "hypodermnet"
    with pytest.raises(ValueError, match="valid models"):
        parse_models("mnv3s,nope")


def test_bench_rejects_unknown_model(capsys):
    assert cli.main(["bench", "--models", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_bench_rejects_bad_threads(capsys):
    assert cli.main(["bench", "--models", "mnv3s", "--threads", "zero"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_models_lists_every_model(capsys):
    assert cli.main(["models", "--num-classes", "5"]) == 0
    out = capsys.readouterr().out
    assert "1,522,981" in out and "alias: hypodermnet" in out and "densenet121" in out


def test_unknown_command_lists_valid_commands(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command" in err and "bench" in err and "predict" in err


def test_help_lists_commands_without_importing_torch_modules(capsys):
    assert cli.main(["--help"]) == 0
    assert "serve" in capsys.readouterr().out
