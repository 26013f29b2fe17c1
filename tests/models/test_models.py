"""The model zoo: faithfulness to torchvision, the three changes, the registry API."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from hypoderm.models import (
    ECA,
    MNV3_SMALL,
    MODELS,
    count_parameters,
    create_model,
    eca_kernel_size,
    imagenet_weights_path,
    list_models,
    mnv3s_spec,
    output_stride,
    receptive_field,
    registry,
)

torch.set_num_threads(1)

# Golden parameter counts at 5 classes. mnv3s = torchvision's 2,542,856 at 1000 classes minus
# 995 x (1024 + 1) classifier weights; ECA variants drop SE's two 1x1 convs and add k weights per block.
GOLDEN_PARAMS_5 = {
    "mnv3s": 1_522_981, "mnv3s-lrelu": 1_522_981, "mnv3s-dil": 1_522_981, "mnv3s-lrelu-dil": 1_522_981,
    "mnv3s-eca": 1_061_380, "mnv3s-eca-lrelu": 1_061_380, "mnv3s-eca-dil": 1_061_380,
    "mnv3s-eca-lrelu-dil": 1_061_380, "hypodermnet": 1_061_380,
    "hypodermnet-dil7": 1_061_380, "hypodermnet-dil1": 1_061_380, "hypodermnet-slope0.1": 1_061_380,
    "hypodermnet-ecaproj": 1_061_368,
    "resnet18": 11_179_077, "resnet50": 23_518_277, "mobilenet_v2": 2_230_277, "mobilenet_v3_large": 4_208_437,
    "shufflenet_v2_x1_0": 1_258_729, "efficientnet_b0": 4_013_953, "densenet121": 6_958_981,
}
ALL = list_models()


def test_registry_is_covered_by_golden_table():
    assert set(ALL) == set(GOLDEN_PARAMS_5)


@pytest.mark.parametrize("name", ALL)
def test_golden_parameter_count(name):
    assert count_parameters(create_model(name, num_classes=5)) == GOLDEN_PARAMS_5[name]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [224, 97])
def test_forward_shape(name, size):
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_backward_reaches_every_parameter(name):
    model = create_model(name, num_classes=3).train()
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([0, 2]))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


def test_mnv3s_is_torchvision_mobilenet_v3_small():
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_small(num_classes=1000).eval()
    # make BN statistics non-trivial so the comparison exercises them
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    ours = create_model("mnv3s", num_classes=1000).eval()
    assert count_parameters(ours) == count_parameters(reference) == 2_542_856
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff <= 1e-5


# ECA's adaptive kernel, t = int(|(log2 C + 1) / 2|), odd, >= 3 (Wang et al. 2020).
ECA_KERNELS = {16: 3, 64: 3, 96: 3, 120: 3, 144: 5, 240: 5, 256: 5, 288: 5, 576: 5, 1024: 5, 2048: 7}


@pytest.mark.parametrize("channels,kernel", sorted(ECA_KERNELS.items()))
def test_eca_kernel_size_table(channels, kernel):
    assert eca_kernel_size(channels) == kernel


def test_eca_kernels_in_the_improved_model_follow_the_formula():
    model = create_model("hypodermnet", num_classes=2)
    ecas = [m for m in model.modules() if isinstance(m, ECA)]
    se_positions = [b for b in MNV3_SMALL.blocks if b.attention == "se"]
    assert len(ecas) == len(se_positions) == 9
    for eca, block in zip(ecas, se_positions, strict=True):
        assert eca.channels == block.expanded_channels
        assert eca.conv.kernel_size == (eca_kernel_size(block.expanded_channels),)
    assert not any(isinstance(m, torchvision.ops.SqueezeExcitation) for m in model.modules())


def test_eca_matches_reference_formulation():
    """Our transpose-free ECA equals the ECA-Net code (pool -> squeeze -> transpose -> conv1d -> transpose)."""
    torch.manual_seed(0)
    eca = ECA(40)
    x = torch.randn(3, 40, 7, 7)
    y = nn.functional.adaptive_avg_pool2d(x, 1)
    y = eca.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
    assert torch.allclose(eca(x), x * torch.sigmoid(y), atol=1e-6)


def test_eca_placement_after_projection():
    model = create_model("mnv3s-eca", num_classes=2, eca_placement="project")
    ecas = [m for m in model.modules() if isinstance(m, ECA)]
    outs = [b.out_channels for b in MNV3_SMALL.blocks if b.attention == "se"]
    assert [e.channels for e in ecas] == outs


@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_leaky_relu_replaces_relu_and_hardswish(slope):
    model = create_model("mnv3s-lrelu", num_classes=2, leaky_slope=slope)
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == slope for m in leaky)
    assert not any(isinstance(m, nn.Hardswish) for m in model.modules())
    # the only ReLUs left are inside SE's squeeze (part of the attention module, not the backbone)
    relus_outside_se = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU) and ".activation" not in n]
    assert relus_outside_se == []


def test_dilation_widens_receptive_field_and_keeps_output_stride():
    spec = mnv3s_spec("hypodermnet")
    assert output_stride(spec) == output_stride(MNV3_SMALL) == 32
    assert receptive_field(spec) > receptive_field(MNV3_SMALL)
    model = create_model("hypodermnet", num_classes=2).eval()
    for size in (224, 320):
        with torch.no_grad():
            feat = model.forward_features(torch.randn(1, 3, size, size))
        assert feat.shape[-2:] == (size // 32, size // 32)
    dilations = [m.dilation for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert sum(d == (2, 2) for d in dilations) == len([b for b in spec.blocks if b.dilation == 2]) > 0


def test_dilation_options_and_errors():
    model = create_model("mnv3s-dil", num_classes=2, dilation_blocks=(9, 10), dilation_rate=3)
    dil = [m.dilation for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert dil.count((3, 3)) == 2
    with pytest.raises(ValueError, match="stride"):
        create_model("mnv3s-dil", num_classes=2, dilation_blocks=(3,))  # a stride-2 block


def test_design_variants_change_only_their_choice():
    base = mnv3s_spec("mnv3s-eca-lrelu-dil")  # what the design variants vary
    assert [b.dilation for b in mnv3s_spec("hypodermnet-dil7").blocks] == [1] * 9 + [2, 2]
    assert [b.dilation for b in mnv3s_spec("hypodermnet-dil1").blocks] == [1] * 7 + [2] + [1] * 3
    assert mnv3s_spec("hypodermnet-ecaproj").eca_placement == "project"
    assert mnv3s_spec("hypodermnet-slope0.1").leaky_slope == 0.1
    assert mnv3s_spec("hypodermnet-slope0.1").blocks == base.blocks
    for name in ("hypodermnet-dil7", "hypodermnet-dil1"):
        assert receptive_field(mnv3s_spec(name)) > receptive_field(MNV3_SMALL)
        assert output_stride(mnv3s_spec(name)) == 32


def test_eight_variants_are_distinct_combinations():
    variants = [r for r in MODELS.values() if r.family == "variant"]
    assert len(variants) == 8 and len({(r.eca, r.leaky_relu, r.dilation) for r in variants}) == 8


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        create_model("mobilenet-v9", num_classes=2)
    for name in ("mnv3s", "hypodermnet", "resnet50"):
        assert name in str(e.value)


def test_misspelled_option_is_an_error_not_ignored():
    with pytest.raises(TypeError, match="leaky_slope"):
        create_model("mnv3s-lrelu", num_classes=2, leaky_slop=0.1)
    with pytest.raises(TypeError):
        create_model("mnv3s", num_classes=2, leaky_slope=0.1)  # no Leaky-ReLU in the reference


def test_partial_load_from_torchvision_state_dict(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.mobilenet_v3_small(num_classes=1000)
    path = tmp_path / "mobilenet_v3_small.pth"
    torch.save(source.state_dict(), path)
    model = create_model("hypodermnet", num_classes=5, pretrained=path)
    report = model.pretrained_report
    assert any(".fc1." in k for k in report.unexpected)  # SE weights skipped
    assert {k for k, _, _ in report.shape_mismatch} == {"classifier.3.weight", "classifier.3.bias"}
    assert any(k.endswith("conv.weight") for k in report.missing)  # ECA initialised fresh
    assert torch.equal(model.state_dict()["features.0.0.weight"], source.state_dict()["features.0.0.weight"])
    assert torch.equal(model.state_dict()["classifier.0.weight"], source.state_dict()["classifier.0.weight"])
    assert "loaded" in str(report) and "initialised fresh" in str(report)


def test_fresh_eca_kernels_start_at_zero_only_from_pretrained_weights(tmp_path):
    """From ImageNet, ECA (no counterpart in the SE blocks it replaces) starts as a uniform 0.5 gate; from scratch
    it keeps PyTorch's random kernel, as the ECA-Net code does."""
    torch.manual_seed(2)
    path = tmp_path / "w.pth"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict(), path)
    model = create_model("hypodermnet", num_classes=3, pretrained=path)
    ecas = [m for m in model.modules() if isinstance(m, ECA)]
    assert ecas and all(torch.count_nonzero(m.conv.weight) == 0 for m in ecas)
    assert len(model.pretrained_report.zeroed) == len(ecas) and "started at zero" in str(model.pretrained_report)
    x = torch.randn(2, ecas[0].channels, 5, 5)
    assert torch.allclose(ecas[0](x), 0.5 * x)
    scratch = create_model("hypodermnet", num_classes=3)
    assert all(torch.count_nonzero(m.conv.weight) > 0 for m in scratch.modules() if isinstance(m, ECA))
    assert create_model("mnv3s", num_classes=3, pretrained=path).pretrained_report.zeroed == []


def test_reference_loads_everything_but_the_classifier(tmp_path):
    source = torchvision.models.mobilenet_v3_small(num_classes=1000)
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    report = create_model("mnv3s", num_classes=2, pretrained=path).pretrained_report
    assert report.unexpected == []
    assert set(report.missing) == {"classifier.3.weight", "classifier.3.bias"}


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = imagenet_weights_path("resnet18")
    assert path.parent == tmp_path / "hub" / "checkpoints"
    with pytest.raises(FileNotFoundError, match="no download"):
        create_model("resnet18", num_classes=2, pretrained="imagenet")
    path.parent.mkdir(parents=True)
    source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), path)
    model = create_model("resnet18", num_classes=2, pretrained="imagenet")
    assert torch.equal(model.conv1.weight, source.conv1.weight)


def test_pretrained_file_that_is_not_a_state_dict(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable") as info:
        create_model("mnv3s", num_classes=2, pretrained=bad)
    # one line, and never torch's advice to load it with weights_only=False (that would run code from the file)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value), str(info.value)


def test_every_consumer_reads_the_records():
    """A model is one ModelRecord: its family, its changes, its aliases and its ImageNet weights are read from it."""
    paper = MODELS["hypodermnet-dil7"]
    assert (paper.family, paper.eca, paper.leaky_relu, paper.dilation, paper.aliases) == \
        ("design", True, True, True, ("hypodermnet",))
    assert MODELS["resnet50"].baseline and MODELS["resnet50"].spec is None and not MODELS["mnv3s"].baseline
    assert list_models(include_aliases=False, family="baseline")[0] == "resnet18"
    assert imagenet_weights_path("mnv3s-eca").name == imagenet_weights_path("hypodermnet").name
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(registry.table_record("hypodermnet"))


def test_adding_a_model_is_one_record(monkeypatch, capsys):
    from hypoderm.cli import main

    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    registry.register(registry.table_record("mnv3s-eca-drop", eca=True, family="design", aliases=("drop",),
                                            dropout=0.5))
    assert {"mnv3s-eca-drop", "drop"} <= set(list_models())
    assert count_parameters(create_model("drop", num_classes=5)) == GOLDEN_PARAMS_5["mnv3s-eca"]
    assert mnv3s_spec("drop").dropout == 0.5 and mnv3s_spec("drop", dropout=0.1).dropout == 0.1
    with pytest.raises(TypeError, match="leaky_slope"):
        create_model("drop", num_classes=2, leaky_slope=0.1)
    assert main(["models", "--num-classes", "5"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mnv3s-eca-drop "))
    assert "design variant" in line and "1,061,380" in line and "alias: drop" in line
