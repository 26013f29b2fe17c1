"""MixStyle (engine/mixstyle.py): mixes per-image feature statistics between the batch's skin photos while
training, leaves the outliers' rows, eval mode, the state dict and the exported model alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
from hypoderm.engine.config import TrainConfig
from hypoderm.engine.mixstyle import MixStyle, style_sites
from hypoderm.engine.train import TrainError, train
from hypoderm.errors import UsageError
from hypoderm.models import create_model


def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(dim=(2, 3), keepdim=True), (x.var(dim=(2, 3), keepdim=True) + 1e-6).sqrt()


def test_statistics_are_mixed_with_another_photos_and_the_content_kept() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 4, 5, 5) * torch.arange(1, 7).view(6, 1, 1, 1) + torch.arange(6).view(6, 1, 1, 1) * 10
    ms = MixStyle(p=1.0, alpha=0.1)
    torch.manual_seed(1)
    out = ms(x)
    # replay the same draws: lam ~ Beta, then the permutation
    torch.manual_seed(1)
    torch.rand(())
    lam = ms.beta.sample((6, 1, 1, 1))
    perm = torch.randperm(6)
    mu, sig = stats(x)
    mu_out, sig_out = stats(out)
    torch.testing.assert_close(mu_out, lam * mu + (1 - lam) * mu[perm], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(sig_out, lam * sig + (1 - lam) * sig[perm], rtol=1e-3, atol=1e-3)
    # what is left after removing each photo's statistics (its content) does not change
    torch.testing.assert_close((out - mu_out) / sig_out, (x - mu) / sig, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(out, x)


def test_only_the_first_limit_rows_are_mixed_and_p0_is_identity() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4) + torch.arange(8).view(8, 1, 1, 1)
    ms = MixStyle(p=1.0)
    ms.limit = 5
    out = ms(x)
    assert torch.equal(out[5:], x[5:])  # the outlier-exposure rows keep their own style
    mu_head, mu_out = stats(x[:5])[0], stats(out[:5])[0]
    assert not torch.allclose(mu_head, mu_out)
    # mixed only among the first five: every new mean lies within their range, not the tail's (means 5-7)
    assert mu_out.max() <= mu_head.max() + 1e-4 and mu_out.min() >= mu_head.min() - 1e-4
    assert torch.equal(MixStyle(p=0.0)(x), x)
    ms.limit = 1
    assert torch.equal(ms(x), x)  # one photo has no one to mix with


def test_hooks_act_in_training_only_and_leave_the_state_dict_alone() -> None:
    torch.manual_seed(0)
    model = create_model("mnv3s", num_classes=3).eval()
    plain = create_model("mnv3s", num_classes=3)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    x = torch.rand(4, 3, 64, 64)
    handles = MixStyle(p=1.0).attach(model)
    assert len(handles) == 3 and model.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))  # eval: identity
        model.train()
        plain.train()
        torch.manual_seed(3)
        mixed = model(x)
        torch.manual_seed(3)
        assert not torch.allclose(mixed, plain(x))  # training: the hooks change the features
    for h in handles:
        h.remove()


def test_sites_end_the_first_three_resolution_stages() -> None:
    m = create_model("mnv3s", num_classes=3)
    assert [i for i, b in enumerate(m.features) if any(b is s for s in style_sites(m))] == [1, 3, 8]
    r = create_model("resnet18", num_classes=3)
    assert style_sites(r) == [r.layer1, r.layer2, r.layer3]
    with pytest.raises(ValueError, match="layer1-3.*features"):
        style_sites(nn.Sequential(nn.Conv2d(3, 4, 3)))


@pytest.mark.parametrize(("kw", "match"), [({"mixstyle": 1.5}, "mixstyle"), ({"mixstyle": -0.1}, "mixstyle"),
                                           ({"mixstyle": 0.5, "mixstyle_alpha": 0.0}, "mixstyle_alpha")])
def test_bad_settings_are_usage_errors(kw: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        TrainConfig(data="d", **kw)


def tiny(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), model="mnv3s", folds=3, size=32, epochs=2, batch_size=4, out=str(out), seed=2,
                outlier_exposure=0.5, progress=False, device="cpu", warmup_epochs=0.5, deterministic=True)
    return TrainConfig(**{**base, **kw})


def test_training_with_mixstyle_changes_the_weights_not_the_model(image_folder: Path, tmp_path: Path) -> None:
    off = load_checkpoint(train(tiny(image_folder, tmp_path / "off")) / "best.pt")
    on_dir = train(tiny(image_folder, tmp_path / "on", mixstyle=1.0))
    on = load_checkpoint(on_dir / "best.pt")
    again = load_checkpoint(train(tiny(image_folder, tmp_path / "again", mixstyle=1.0)) / "best.pt")
    assert on["config"]["mixstyle"] == 1.0 and off["state_dict"].keys() == on["state_dict"].keys()
    assert any(not torch.equal(off["state_dict"][k], on["state_dict"][k]) for k in on["state_dict"])
    assert all(torch.equal(on["state_dict"][k], again["state_dict"][k]) for k in on["state_dict"])  # seeded
    model = model_from_checkpoint(on)  # the shipped model: no hooks, an ordinary mnv3s
    assert not any(m._forward_hooks for m in model.modules())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_a_model_without_stages_is_a_train_error(image_folder: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import hypoderm.models as models

    monkeypatch.setattr(models, "create_model", lambda *a, **k: nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    with pytest.raises(TrainError, match="--mixstyle: .*layer1-3"):
        train(tiny(image_folder, tmp_path / "run", mixstyle=0.5, epochs=1))
