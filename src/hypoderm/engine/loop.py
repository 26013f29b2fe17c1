"""The epoch loop of `hypoderm train`: the optimiser and its schedule, one training epoch, validation.

Plain loops (torchvision-references shape); `hypoderm.engine.train` wires them together and calls them by the
names it imports (a test replaces `hypoderm.engine.train.train_one_epoch` to kill a run mid-epoch)."""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel  # cheap: torch.optim is already loaded by torch
from torch.utils.data import DataLoader

from hypoderm.engine.config import TrainConfig, TrainError
from hypoderm.engine.mixstyle import MixStyle
from hypoderm.engine.runtime import predict_logits


def classifier_head(model: nn.Module) -> nn.Module | None:
    """The model's classifier head: `classifier` (our MobileNetV3-Small family, torchvision's MobileNets,
    EfficientNet, DenseNet) or `fc` (ResNet, ShuffleNet); None when it has neither."""
    for name in ("classifier", "fc"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    return None


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (1-d tensors), as in timm and torchvision. With
    cfg.backbone_lr_scale < 1 the trunk (everything but the classifier head) learns at lr x that scale and the
    head at lr: the usual fine-tuning of a pretrained network. Each group says whether it is the trunk's
    (`trunk`), for `lr_lambdas`' head-only epochs."""
    # one rate for all, no head-only epochs: two groups, as before the options, so older runs still resume
    split = cfg.backbone_lr_scale != 1.0 or cfg.head_epochs > 0
    in_head: set[int] = set()
    if split:
        head = classifier_head(model)
        if head is None:
            flag = "--backbone-lr-scale" if cfg.backbone_lr_scale != 1.0 else "--head-epochs"
            raise TrainError(f"{flag} needs a model with a `classifier` or `fc` head; "
                             f"{type(model).__name__} has neither")
        in_head = {id(p) for p in head.parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((split and id(p) not in in_head, p.ndim <= 1), []).append(p)
    return torch.optim.AdamW(
        [{"params": params, "lr": cfg.lr * cfg.backbone_lr_scale if in_trunk else cfg.lr,
          "weight_decay": 0.0 if no_decay else cfg.weight_decay, "trunk": in_trunk}
         for (in_trunk, no_decay), params in sorted(groups.items())], lr=cfg.lr)


def warmup_cosine(warmup_steps: int, total_steps: int):  # noqa: ANN201 - a LambdaLR function
    """Linear warm-up to the base LR, then cosine decay to 0 (per optimiser step)."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def lr_lambdas(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> list:
    """One LambdaLR function per parameter group: warm-up and cosine over the run; with cfg.head_epochs, the
    trunk's groups stay at 0 for those epochs, then warm up and decay over the epochs left."""
    warmup, total = int(round(cfg.warmup_epochs * steps_per_epoch)), cfg.epochs * steps_per_epoch
    whole = warmup_cosine(warmup, total)
    frozen = cfg.head_epochs * steps_per_epoch
    if frozen == 0:
        return [whole for _ in optimizer.param_groups]
    later = warmup_cosine(warmup, total - frozen)

    def trunk(step: int) -> float:
        return 0.0 if step < frozen else later(step - frozen)
    return [trunk if g.get("trunk") else whole for g in optimizer.param_groups]


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device, *,
                    scaler: torch.amp.GradScaler | None = None, ema: AveragedModel | None = None,
                    max_steps: int | None = None, channels_last: bool = False, progress: bool = False,
                    desc: str = "train", outliers: DataLoader | None = None,
                    outlier_weight: float = 0.0, mixstyle: MixStyle | None = None,
                    freeze_bn: bool = False) -> dict[str, float]:
    """One pass over `loader`. With `outliers` (pictures that are not skin), each batch also runs one
    batch of them and adds `outlier_weight` x their cross-entropy to the uniform distribution. `mixstyle` (hooked
    on the model) mixes styles among each batch's skin photos only, never with the outliers'. With `freeze_bn`
    every batch norm stays in eval mode: it normalises with its running statistics and never updates them."""
    from hypoderm.engine.outliers import uniform_target_loss

    model.train()
    if freeze_bn:
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.eval()
    outlier_batches = iter(outliers) if outliers is not None else None
    use_amp = scaler is not None and scaler.is_enabled()
    total_loss, correct, seen, steps = 0.0, 0, 0, 0
    n_batches = len(loader) if max_steps is None else min(len(loader), max_steps)
    from hypoderm.progress import progress_bar

    bar = progress_bar(total=n_batches, desc=desc, unit="batch", disable=not progress)
    start = time.perf_counter()
    for x, y in loader:
        if max_steps is not None and steps >= max_steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        n = len(y)
        if mixstyle is not None:
            mixstyle.limit = n
        if outlier_batches is not None:
            x_out = next(outlier_batches, None)
            if x_out is None:  # the bank is shorter than the epoch: start it again
                outlier_batches = iter(outliers)  # type: ignore[arg-type]
                x_out = next(outlier_batches)
            x = torch.cat([x, x_out[0].to(device, non_blocking=True)])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            all_logits = model(x)
            logits = all_logits[:n]
            loss = criterion(logits, y)
            if len(all_logits) > n:
                loss = loss + outlier_weight * uniform_target_loss(all_logits[n:])
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {loss.item()} at step {steps}; lower --lr or disable --amp")
        optimizer.zero_grad(set_to_none=True)
        if use_amp and scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        if ema is not None:
            unwrapped = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
            ema.update_parameters(unwrapped)
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        steps += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    elapsed = time.perf_counter() - start
    return {"loss": total_loss / max(1, seen), "accuracy": correct / max(1, seen), "images": seen,
            "steps": steps, "images_per_s": seen / elapsed if elapsed > 0 else float("nan")}


def validate(model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device, *,
             amp: bool = False, channels_last: bool = False) -> dict[str, float]:
    """Validation loss, accuracy and macro-F1 (the early-stopping metric)."""
    from hypoderm.metrics import macro_f1

    logits, y = predict_logits(model, loader, device, amp=amp, channels_last=channels_last)
    loss = criterion(torch.from_numpy(logits), torch.from_numpy(y)).item()
    pred = logits.argmax(1)
    return {"loss": loss, "accuracy": float((pred == y).mean()), "macro_f1": macro_f1(y, pred, logits.shape[1])}
