"""engine/loop.py's optimiser: one learning rate for the whole network by default, and with backbone_lr_scale the
trunk (everything but the classifier head) at lr x scale while the head keeps lr, through the LR schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hypoderm.engine.config import TrainConfig, TrainError
from hypoderm.engine.loop import classifier_head, make_optimizer, warmup_cosine
from hypoderm.errors import UsageError
from hypoderm.models import create_model


def lr_of(optimizer: torch.optim.Optimizer) -> dict[int, float]:
    out: dict[int, float] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert id(p) not in out, "a parameter is in two groups"
            out[id(p)] = group["lr"]
    return out


def test_one_rate_for_all_by_default_in_the_two_groups_older_runs_resume_with() -> None:
    model = create_model("mnv3s", num_classes=3)
    opt = make_optimizer(model, TrainConfig(data="d", lr=1e-3))
    assert len(opt.param_groups) == 2 and [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    lrs = lr_of(opt)
    assert set(lrs.values()) == {1e-3} and set(lrs) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", ["hypodermnet", "resnet18"])
def test_the_trunk_learns_at_the_scaled_rate_and_the_head_at_lr(name: str) -> None:
    model = create_model(name, num_classes=3)
    opt = make_optimizer(model, TrainConfig(data="d", lr=1e-3, backbone_lr_scale=0.1))
    lrs = lr_of(opt)
    head = classifier_head(model)
    assert head is not None and head is (model.fc if name == "resnet18" else model.classifier)
    head_ids = {id(p) for p in head.parameters()}
    assert set(lrs) == {id(p) for p in model.parameters()}
    assert all(lrs[i] == pytest.approx(1e-3) for i in head_ids)
    assert all(lr == pytest.approx(1e-4) for i, lr in lrs.items() if i not in head_ids)
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert no_decay == {id(p) for p in model.parameters() if p.ndim <= 1}

    # the warm-up and cosine schedule scale both rates alike: the ratio holds at every step
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(3, 10))
    for _ in range(6):
        opt.step()
        sched.step()
        rates = sorted({g["lr"] for g in opt.param_groups})
        assert len(rates) == 2 and rates[0] == pytest.approx(0.1 * rates[1])


def test_a_model_without_a_head_cannot_scale_its_trunk() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    assert classifier_head(model) is None
    make_optimizer(model, TrainConfig(data="d"))  # one rate: fine
    with pytest.raises(TrainError, match="classifier.*fc"):
        make_optimizer(model, TrainConfig(data="d", backbone_lr_scale=0.5))


@pytest.mark.parametrize("scale", [0.0, -0.1, 1.5, float("nan")])
def test_scale_outside_0_1_is_a_usage_error(scale: float) -> None:
    with pytest.raises(UsageError, match="backbone_lr_scale"):
        TrainConfig(data="d", backbone_lr_scale=scale)
