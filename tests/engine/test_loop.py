"""engine/loop.py's optimiser: one learning rate for the whole network by default, and with backbone_lr_scale the
trunk (everything but the classifier head) at lr x scale while the head keeps lr, through the LR schedule; with
head_epochs the trunk stands still for those epochs, then warms up (linear probing, then fine-tuning)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from hypoderm.engine.config import TrainConfig, TrainError
from hypoderm.engine.loop import classifier_head, lr_lambdas, make_optimizer, warmup_cosine
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
    with pytest.raises(TrainError, match="--head-epochs needs a model with a `classifier` or `fc` head"):
        make_optimizer(model, TrainConfig(data="d", head_epochs=1))


@pytest.mark.parametrize("scale", [0.0, -0.1, 1.5, float("nan")])
def test_scale_outside_0_1_is_a_usage_error(scale: float) -> None:
    with pytest.raises(UsageError, match="backbone_lr_scale"):
        TrainConfig(data="d", backbone_lr_scale=scale)


def test_head_epochs_move_only_the_head_then_the_trunk_warms_up_and_decays() -> None:
    torch.manual_seed(0)
    model = create_model("mnv3s", num_classes=3)
    cfg = TrainConfig(data="d", lr=1e-3, epochs=4, head_epochs=2, warmup_epochs=1.0, backbone_lr_scale=0.5)
    opt = make_optimizer(model, cfg)
    head_ids = {id(p) for p in model.classifier.parameters()}
    assert {g["trunk"] for g in opt.param_groups} == {True, False}
    assert all(g["trunk"] == (id(g["params"][0]) not in head_ids) for g in opt.param_groups)
    steps_per_epoch = 3
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambdas(opt, cfg, steps_per_epoch))
    trunk0 = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in head_ids}
    head0 = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) in head_ids}
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    trunk_rates, head_rates = [], []
    for step in range(4 * steps_per_epoch):
        trunk_rates.append(max(g["lr"] for g in opt.param_groups if g["trunk"]))
        head_rates.append(max(g["lr"] for g in opt.param_groups if not g["trunk"]))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
        if step == 2 * steps_per_epoch - 1:  # the last step of the head-only epochs
            params = dict(model.named_parameters())
            assert all(torch.equal(params[n], v) for n, v in trunk0.items()), "the trunk moved while frozen"
            assert any(not torch.equal(params[n], v) for n, v in head0.items()), "the head did not learn"
    params = dict(model.named_parameters())
    assert any(not torch.equal(params[n], v) for n, v in trunk0.items()), "the trunk never learned"
    assert trunk_rates[:6] == [0.0] * 6
    # then its own warm-up (one epoch) to lr x scale, and a cosine to the end of the run
    assert trunk_rates[6:9] == pytest.approx([0.5e-3 * k / 3 for k in (1, 2, 3)])
    assert trunk_rates[9] == pytest.approx(0.5e-3) and trunk_rates[9] > trunk_rates[10] > trunk_rates[11] > 0
    # the head's schedule is the whole run's, as without head epochs
    whole = warmup_cosine(3, 12)
    assert head_rates == pytest.approx([1e-3 * whole(s) for s in range(12)])


def test_without_head_epochs_every_group_follows_the_one_schedule() -> None:
    model = create_model("mnv3s", num_classes=3)
    for cfg in (TrainConfig(data="d"), TrainConfig(data="d", backbone_lr_scale=0.1)):
        opt = make_optimizer(model, cfg)
        fs = lr_lambdas(opt, cfg, 5)
        ref = warmup_cosine(5, cfg.epochs * 5)
        assert len(fs) == len(opt.param_groups)
        assert all(f(s) == ref(s) for f in fs for s in (0, 4, 50, 149))


@pytest.mark.parametrize("n", [-1, 30, 31])
def test_head_epochs_must_leave_the_trunk_an_epoch(n: int) -> None:
    with pytest.raises(UsageError, match="head_epochs must be in 0..epochs-1"):
        TrainConfig(data="d", epochs=30, head_epochs=n)


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in model.named_buffers() if "running_" in n}


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_bn_keeps_the_running_statistics_and_normalises_with_them(freeze: bool) -> None:
    """With freeze_bn a training epoch leaves every batch norm's running statistics bit-unchanged while its scale
    and shift (and the rest of the network) learn, and the loss it trains on is the eval-mode forward's (the
    running statistics normalise, not the batch's); without it the statistics move, as before."""
    from torch.utils.data import TensorDataset

    from hypoderm.engine.loop import train_one_epoch

    torch.manual_seed(0)
    model = create_model("mnv3s", num_classes=3)
    model.classifier[2].p = 0.0  # no dropout: the losses below are then exact
    nn.init.normal_(model.classifier[3].weight, std=1.0)  # logits that depend on the features, not all ~0
    cfg = TrainConfig(data="d", lr=1e-3)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambdas(opt, cfg, 2))
    x, y = torch.randn(8, 3, 64, 64) * 3 + 1, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    stats0 = _bn_state(model)
    bn_affine0 = {n: p.detach().clone() for n, p in model.named_parameters() if ".1.weight" in n}
    model.eval()
    with torch.no_grad():  # the first batch's loss, as eval mode (running statistics) computes it
        eval_loss = nn.functional.cross_entropy(model(x[:4]), y[:4]).item()
    model.train()
    with torch.no_grad():
        train_loss = nn.functional.cross_entropy(model(x[:4]), y[:4]).item()
    model.load_state_dict({**model.state_dict(), **stats0})  # the no-grad train-mode pass moved them: put back
    seen: list[float] = []

    def criterion(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(logits, target)
        seen.append(loss.item())
        return loss

    train_one_epoch(model, loader, criterion, opt, sched, torch.device("cpu"), freeze_bn=freeze)
    stats = _bn_state(model)
    unchanged = all(torch.equal(stats[n], v) for n, v in stats0.items() if "num_batches" not in n)
    assert unchanged == freeze
    assert seen[0] == pytest.approx(eval_loss if freeze else train_loss, rel=1e-5)
    assert eval_loss != pytest.approx(train_loss, rel=1e-3)  # the two forwards differ on this input
    params = dict(model.named_parameters())
    assert any(not torch.equal(params[n], v) for n, v in bn_affine0.items()), "the batch norms' scale never learned"
    assert model.training and model.classifier.training  # everything else stays in train mode


def test_freeze_bn_needs_pretrained_weights() -> None:
    with pytest.raises(UsageError, match="freeze_bn keeps the pretrained start's batch-norm statistics"):
        TrainConfig(data="d", freeze_bn=True)
    assert TrainConfig(data="d", freeze_bn=True, pretrained="w.pth").freeze_bn
