"""`hypoderm train`: train one model on one fold (torchvision-references shape).

`train_one_epoch` and `evaluate` are plain loops; `train(config)` only wires objects together.
Multi-GPU: launch with `torchrun --nproc_per_node N -m hypoderm.cli train ...` (DDP; nccl on CUDA,
gloo on CPU); rank 0 alone validates, logs and writes checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from hypoderm.checkpoint import FORMAT, save_atomic
from hypoderm.models import canonical_name
from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.config import RECIPES, TrainConfig, add_train_arguments, config_from_args
from hypoderm.engine.data import (CachedImageDataset, build_eval_loader, build_train_loader, class_weights,
                                  eval_transform, train_transform)
from hypoderm.preprocess import PreprocessSpec


class TrainError(RuntimeError):
    """A user-facing training problem (bad data, leaky split, missing checkpoint, ...)."""


# ----------------------------------------------------------------------------------------------- setup
def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError("--device cuda requested but no CUDA device is available")
        return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise TrainError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def init_distributed(device_name: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) when not launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return dist.get_rank(), world, local_rank


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ data
@dataclass
class FoldData:
    """One fold of one dataset, decoded: what training and evaluation need."""

    index: Any  # hypoderm.data.dataset.DatasetIndex (readable samples only)
    split: Any  # hypoderm.data.splits.Split
    split_path: Path
    class_names: list[str]
    labels: np.ndarray
    train_idx: list[int]
    val_idx: list[int]
    test_idx: list[int]
    images: dict[int, torch.Tensor]
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def subset(self, idx: list[int]) -> tuple[list[torch.Tensor], list[int]]:
        return [self.images[i] for i in idx], [int(self.labels[i]) for i in idx]


def readable_index(source: str, group_regex: str | None, strict: bool, cache: DecodedCache,
                   progress: bool = False) -> tuple[Any, list[tuple[str, str]]]:
    """Index of `source` without unreadable images, decoding each image once into `cache`.

    `check_images` with the cache as its loader: the same rule and reasons, but the decode is kept.
    Returns the readable index and (relative path, reason) for each unreadable image.
    """
    from hypoderm.data.dataset import check_images, load_index

    index = load_index(source, group_regex=group_regex)
    good, bad = check_images(index, strict=strict, loader=cache.get, progress=progress)
    return good, [(index.relpath(s), reason) for s, reason in bad]


def check_leakage(index: Any, split: Any, allow: bool) -> list[str]:
    """Refuse a split whose train/test share groups or near-duplicates, unless `allow`."""
    from hypoderm.data.audit import find_leaks

    leaks = list(find_leaks(index, split))
    if leaks and not allow:
        shown = "\n".join(f"  {leak}" for leak in leaks[:10])
        more = f"\n  ... and {len(leaks) - 10} more" if len(leaks) > 10 else ""
        raise TrainError(f"the split leaks between folds ({len(leaks)} problem(s)):\n{shown}{more}\n"
                         "Fix the split (`hypoderm data split`) or pass --allow-leakage to train anyway.")
    return [str(x) for x in leaks]


def prepare_fold(cfg: TrainConfig, run_dir: Path | None, cache: DecodedCache, *, write_split: bool = True,
                 progress: bool = False, check_leaks: bool = True) -> FoldData:
    """Index the data, load or make the split (written into the run dir), check leakage, decode."""
    from hypoderm.data.splits import Split, make_split

    from hypoderm.data.dataset import DatasetError

    index, bad = readable_index(cfg.data, cfg.group_regex, cfg.strict, cache, progress)
    existing = Path(cfg.split) if cfg.split else run_dir / "split.json" if run_dir is not None else None
    if existing is not None and (cfg.split or existing.is_file()):
        split_path = existing  # given, or a resumed run / cv fold: reuse, never re-draw
        split = Split.load(split_path)
        try:
            split.check_matches(index)
        except DatasetError as e:
            if not bad:
                raise
            raise DatasetError(f"{e}. Note: {len(bad)} unreadable image(s) were left out of the dataset: "
                               + ", ".join(p for p, _ in bad[:5])) from e
    else:
        split = make_split(index, folds=cfg.folds, seed=cfg.seed, group_regex=cfg.group_regex)
        if run_dir is None:
            raise TrainError("a run directory is needed to store the new split")
        split_path = run_dir / "split.json"
        if write_split:
            split.save(split_path)
    if not 0 <= cfg.fold < split.folds:
        raise TrainError(f"fold {cfg.fold} does not exist; the split has folds 0..{split.folds - 1}")
    if check_leaks:
        check_leakage(index, split, cfg.allow_leakage)
    train_idx, val_idx, test_idx = split.partition(cfg.fold)
    if cfg.final:  # the shipped model: the test fold trains too; validation still steers stopping and calibration
        train_idx, test_idx = sorted(train_idx + test_idx), []
    if not train_idx or not val_idx:
        raise TrainError(f"fold {cfg.fold} leaves {len(train_idx)} training and {len(val_idx)} validation images")
    images = {i: cache.get(s.path) for i, s in enumerate(index.samples)}
    return FoldData(index=index, split=split, split_path=split_path, class_names=list(index.class_names),
                    labels=index.labels(), train_idx=train_idx, val_idx=val_idx, test_idx=test_idx,
                    images=images, unreadable=bad)


def counterfactual_for(cfg: TrainConfig, class_names: list[str]) -> Any:
    """The `--counterfactual NORMAL:LESION` augmentation for these classes, or None."""
    if not cfg.counterfactual:
        return None
    from hypoderm.engine.augment import Counterfactual

    normal, lesion = cfg.counterfactual.split(":")
    missing = [c for c in (normal, lesion) if c not in class_names]
    if missing:
        raise TrainError(f"--counterfactual names unknown class(es) {missing}; the classes are {class_names}")
    return Counterfactual(class_names.index(normal), class_names.index(lesion), cfg.counterfactual_p)


# ------------------------------------------------------------------------------------- optimisation
def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (1-d tensors), as in timm and torchvision."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def warmup_cosine(warmup_steps: int, total_steps: int):  # noqa: ANN201 - a LambdaLR function
    """Linear warm-up to the base LR, then cosine decay to 0 (per optimiser step)."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device, *,
                    scaler: torch.amp.GradScaler | None = None, ema: nn.Module | None = None,
                    max_steps: int | None = None, channels_last: bool = False, progress: bool = False,
                    desc: str = "train") -> dict[str, float]:
    model.train()
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
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(x)
            loss = criterion(logits, y)
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {loss.item()} at step {steps}; lower --lr or disable --amp")
        optimizer.zero_grad(set_to_none=True)
        if use_amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model.module if hasattr(model, "module") else model)
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


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader, device: torch.device, *, amp: bool = False,
                   channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(logits float32 (N, K), labels (N,)) over a loader, in order."""
    model.eval()
    out, ys = [], []
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            out.append(model(x).float().cpu())
        ys.append(torch.as_tensor(y))
    return torch.cat(out).numpy(), torch.cat(ys).numpy()


def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device, *,
             amp: bool = False, channels_last: bool = False) -> dict[str, float]:
    """Validation loss, accuracy and macro-F1 (the early-stopping metric)."""
    from sklearn.metrics import f1_score

    logits, y = predict_logits(model, loader, device, amp=amp, channels_last=channels_last)
    num_classes = logits.shape[1]
    loss = criterion(torch.from_numpy(logits), torch.from_numpy(y)).item()
    pred = logits.argmax(1)
    return {"loss": loss, "accuracy": float((pred == y).mean()),
            "macro_f1": float(f1_score(y, pred, average="macro", labels=list(range(num_classes)), zero_division=0))}


# -------------------------------------------------------------------------------------- checkpoints
def checkpoint_dict(cfg: TrainConfig, state_dict: dict[str, torch.Tensor], data: FoldData, spec: PreprocessSpec,
                    epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    counts = {c: int((data.labels[data.train_idx] == i).sum()) for i, c in enumerate(data.class_names)}
    return {
        "format": FORMAT, "model_name": cfg.model, "architecture": canonical_name(cfg.model),
        "num_classes": len(data.class_names), "model_kwargs": {},
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "class_names": list(data.class_names), "preprocess": spec.to_dict(),
        "temperature": 1.0, "abstain_threshold": 0.0, "ood": None,
        "config": cfg.to_dict(), "split": data.split.to_dict(), "epoch": epoch, "metrics": metrics,
        "data_summary": {"source": str(cfg.data), "fold": cfg.fold, "counts": data.index.counts(),
                         "train_counts": counts, "n_train": len(data.train_idx), "n_val": len(data.val_idx),
                         "n_test": len(data.test_idx), "unreadable": data.unreadable},
    }


def closeup_loader(data: FoldData, idx: list[int], spec: PreprocessSpec, batch_size: int) -> DataLoader:
    """The `closeup` style-shift views (hypoderm.engine.styleshift) of the photos `idx`, as a loader."""
    from hypoderm.engine.styleshift import build_views

    keys = [data.index.relpath(data.index.samples[i]) for i in idx]
    ims, src = build_views([data.images[i] for i in idx], keys, spec, views=["closeup"])["closeup"]
    labels = [int(data.labels[idx[j]]) for j in src]
    return build_eval_loader(CachedImageDataset(ims, labels, eval_transform(spec)), batch_size=batch_size, workers=0)


def calibrate_best(best_path: Path, model: nn.Module, val_loader: DataLoader, device: torch.device,
                   cfg: TrainConfig, closeups: DataLoader | None = None) -> dict[str, Any]:
    """Fit temperature, abstain threshold and max-logit stats on validation; store them in best.pt.

    With `closeups` (the validation photos' close-up views; used when the recipe trains on close-ups,
    as the app shows a user-framed square) temperature and abstain threshold are fitted on the centre
    crops and the close-ups together: on the development photos a threshold fitted on centre crops
    alone answered 35% of test-fold close-ups at 76% accuracy, against its 95% target
    (benchmarks/shortcut/README.md). The max-logit floor stays on the centre crops.
    """
    from hypoderm.checkpoint import load_checkpoint
    from hypoderm.engine.calibration import choose_abstain_threshold, fit_temperature, max_logit_stats
    from hypoderm.engine.metrics import expected_calibration_error, softmax

    ckpt = load_checkpoint(best_path)
    model.load_state_dict(ckpt["state_dict"])
    centre_logits, y = predict_logits(model, val_loader, device)
    logits = centre_logits
    if closeups is not None:
        extra, extra_y = predict_logits(model, closeups, device)
        logits, y = np.concatenate([centre_logits, extra]), np.concatenate([y, extra_y])
    t = fit_temperature(logits, y)
    probs = softmax(logits, t)
    abstain = choose_abstain_threshold(probs, y, cfg.abstain_target)
    abstain["fitted_on"] = "centre crops + close-ups" if closeups is not None else "centre crops"
    ckpt.update(temperature=t, abstain_threshold=abstain["threshold"], ood=max_logit_stats(centre_logits))
    ckpt["metrics"] = {**ckpt["metrics"], "val/ece_before": expected_calibration_error(softmax(logits), y),
                       "val/ece_after": expected_calibration_error(probs, y), "val/temperature": t,
                       "val/abstain": abstain,
                       # how often each class was predicted: a collapsed model predicts only one
                       "val/predicted_counts": np.bincount(logits.argmax(1), minlength=logits.shape[1]).tolist()}
    save_atomic(ckpt, best_path)
    return ckpt


# --------------------------------------------------------------------------------------------- main
def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.model}-fold{cfg.fold}"


def train(cfg: TrainConfig, cache: DecodedCache | None = None, *, check_leaks: bool = True) -> Path:
    """Train one fold; returns the run directory (best.pt, last.pt, metrics.jsonl, split.json).

    `cache` lets several runs (the folds of `hypoderm cv`) share decoded images; `check_leaks=False`
    skips the leakage check when the caller has already run it on the same split.
    """
    from hypoderm.checkpoint import load_checkpoint
    from hypoderm.models import create_model

    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    last_path, best_path, log_path = run_dir / "last.pt", run_dir / "best.pt", run_dir / "metrics.jsonl"
    resume_ckpt = None
    if cfg.resume:
        if not last_path.is_file():
            raise TrainError(f"--resume: no {last_path} to resume from")
        resume_ckpt = load_checkpoint(last_path)
        # the saved config wins: same data, split, model and recipe; only the run-control flags change
        saved = TrainConfig.from_dict(resume_ckpt["config"])
        cfg = saved.with_(resume=True, stop_after_epoch=cfg.stop_after_epoch, progress=cfg.progress,
                          workers=cfg.workers, device=cfg.device, out=str(run_dir))
    elif last_path.is_file():
        raise TrainError(f"{run_dir} already holds a run (last.pt); pass --resume or choose another --out")

    rank, world, local_rank = init_distributed(cfg.device)
    is_main = rank == 0
    device = resolve_device(cfg.device, local_rank)
    on_cuda = device.type == "cuda"
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif on_cuda:
        torch.backends.cudnn.benchmark = True

    def log(msg: str) -> None:
        if is_main:
            print(msg, flush=True)

    spec = PreprocessSpec.for_size(cfg.size)
    cache = cache or DecodedCache(spec, cfg.cache_dir)
    if cache.spec != spec:
        raise TrainError(f"the image cache was built for {cache.spec}, not {spec}")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob("*.pt.*.tmp"):  # a half-written checkpoint of a killed run
            stale.unlink()
    if world > 1:
        # rank 0 draws and writes the split first, so every rank trains on the same folds
        if is_main and not cfg.split:
            prepare_fold(cfg, run_dir, cache, check_leaks=False)
        dist.barrier()
    data = prepare_fold(cfg, run_dir, cache, write_split=is_main, progress=cfg.progress and is_main,
                        check_leaks=check_leaks)
    k = len(data.class_names)
    log(f"{cfg.model}: {k} classes {data.class_names}; fold {cfg.fold}/{data.split.folds}: "
        f"{len(data.train_idx)} train, {len(data.val_idx)} val, {len(data.test_idx)} test; "
        f"{len(data.unreadable)} unreadable skipped; device {device}" + (f" x{world}" if world > 1 else ""))

    seed_everything(cfg.seed)  # same initial weights on every rank and every run
    model = create_model(cfg.model, num_classes=k, pretrained=cfg.pretrained).to(device)
    if cfg.bn_momentum is not None:
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.momentum = cfg.bn_momentum
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if on_cuda else None)

    xs, ys = data.subset(data.train_idx)
    train_ds = CachedImageDataset(xs, ys, train_transform(spec, cfg.recipe, counterfactual_for(cfg, data.class_names)))
    balance = cfg.balance
    if balance == "sampler" and world > 1:
        log("note: --balance sampler is not combined with DDP sharding; using a class-weighted loss instead")
        balance = "loss"
    generator = torch.Generator()
    train_loader = build_train_loader(train_ds, batch_size=cfg.batch_size, workers=cfg.workers, balance=balance,
                                      num_classes=k, generator=generator, distributed=world > 1, seed=cfg.seed,
                                      pin_memory=on_cuda)
    vx, vy = data.subset(data.val_idx)
    val_loader = build_eval_loader(CachedImageDataset(vx, vy, eval_transform(spec)), batch_size=cfg.batch_size,
                                   workers=cfg.workers, pin_memory=on_cuda)

    weight = class_weights(ys, k).to(device) if balance == "loss" else None
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    val_criterion = nn.CrossEntropyLoss()  # plain NLL on validation, comparable across recipes
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = len(train_loader) if cfg.max_steps is None else min(len(train_loader), cfg.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(int(round(cfg.warmup_epochs * steps_per_epoch)), cfg.epochs * steps_per_epoch))
    use_amp = cfg.amp and on_cuda
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    early = {"best": -1.0, "best_epoch": 0, "bad_epochs": 0}
    start_epoch = 1

    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["state_dict_train"])
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        scheduler.load_state_dict(resume_ckpt["scheduler"])
        scaler.load_state_dict(resume_ckpt["scaler"])
        if ema is not None and resume_ckpt.get("ema") is not None:
            ema.load_state_dict(resume_ckpt["ema"])
        early = dict(resume_ckpt["early_stop"])
        set_rng_state(resume_ckpt["rng"])
        start_epoch = int(resume_ckpt["epoch"]) + 1
        if is_main and log_path.is_file():  # drop log lines of epochs that will be redone
            rows = [r for r in log_path.read_text().splitlines() if r.strip() and json.loads(r)["epoch"] < start_epoch]
            log_path.write_text("".join(r + "\n" for r in rows))
        log(f"resumed from {last_path} after epoch {start_epoch - 1}")
    elif is_main and log_path.exists():
        log_path.unlink()

    stop = start_epoch > cfg.epochs or early["bad_epochs"] >= cfg.patience
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stop:
            break
        # Every epoch's randomness (order, augmentation, dropout) depends only on (seed, epoch, rank),
        # so a run resumed after epoch e replays epoch e+1 exactly as an uninterrupted run would.
        seed_everything(cfg.seed * 1_000_003 + epoch * 1_009 + rank)
        generator.manual_seed(cfg.seed * 1_000_003 + epoch)
        train_loader.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        tr = train_one_epoch(train_model, train_loader, criterion, optimizer, scheduler, device, scaler=scaler,
                             ema=ema, max_steps=cfg.max_steps, channels_last=on_cuda,
                             progress=cfg.progress and is_main, desc=f"epoch {epoch}/{cfg.epochs}")
        eval_model = ema.module if ema is not None else model
        row: dict[str, Any] = {}
        if is_main:
            va = evaluate(eval_model, val_loader, val_criterion, device, amp=use_amp, channels_last=on_cuda)
            row = {"epoch": epoch, "train/loss": tr["loss"], "train/accuracy": tr["accuracy"],
                   "val/loss": va["loss"], "val/accuracy": va["accuracy"], "val/macro_f1": va["macro_f1"],
                   "lr": optimizer.param_groups[0]["lr"], "train/images_per_s": tr["images_per_s"] * world,
                   "time_s": time.perf_counter() - t0}
            improved = va["macro_f1"] > early["best"] + 1e-9
            if improved:
                early.update(best=va["macro_f1"], best_epoch=epoch, bad_epochs=0)
                save_atomic(checkpoint_dict(cfg, eval_model.state_dict(), data, spec, epoch,
                                            {f"val/{k_}": v for k_, v in va.items()}), best_path)
            else:
                early["bad_epochs"] += 1
            last = checkpoint_dict(cfg, eval_model.state_dict(), data, spec, epoch, row)
            last.update(state_dict_train=model.state_dict(), optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
                        ema=ema.state_dict() if ema is not None else None, rng=rng_state(), early_stop=dict(early))
            # The row goes to disk before last.pt: a kill between the two then loses nothing (a resume
            # drops rows of epochs after last.pt's and redoes them), where the other order lost the row.
            with log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
            save_atomic(last, last_path)
            log(f"epoch {epoch:>3}/{cfg.epochs}  train/loss {tr['loss']:.4f}  val/loss {va['loss']:.4f}  "
                f"val/accuracy {va['accuracy']:.3f}  val/macro_f1 {va['macro_f1']:.3f}  "
                f"lr {row['lr']:.2e}  {row['train/images_per_s']:.1f} img/s  {row['time_s']:.1f}s"
                + ("  *best" if improved else ""))
            stop = early["bad_epochs"] >= cfg.patience
        if world > 1:
            flag = [stop]
            dist.broadcast_object_list(flag, src=0)
            stop = bool(flag[0])
        if stop and is_main:
            log(f"early stop: no val/macro_f1 gain for {cfg.patience} epochs (best {early['best']:.3f} "
                f"at epoch {early['best_epoch']})")
        if cfg.stop_after_epoch is not None and epoch >= cfg.stop_after_epoch:
            log(f"stopping after epoch {epoch} as asked (--stop-after-epoch); continue with --resume")
            _finish_distributed(world)
            return run_dir

    if is_main:
        closeups = (closeup_loader(data, data.val_idx, spec, cfg.batch_size)
                    if cfg.calibrate_closeups and "crop" in RECIPES[cfg.recipe] else None)
        calibrated = calibrate_best(best_path, create_model(cfg.model, num_classes=k).to(device), val_loader, device,
                                    cfg, closeups)
        m = calibrated["metrics"]
        log(f"best epoch {calibrated['epoch']}: val/macro_f1 {m['val/macro_f1']:.3f}; temperature "
            f"{calibrated['temperature']:.3f}; abstain threshold {calibrated['abstain_threshold']:.3f} "
            f"(coverage {m['val/abstain']['coverage']:.2f}); checkpoint {best_path}")
        from hypoderm.model_quality import checkpoint_problems

        for problem in checkpoint_problems(calibrated):  # a broken model must not look finished
            log(f"WARNING: {problem['message']}; `hypoderm export` will refuse this checkpoint without --force")
    _finish_distributed(world)
    return run_dir


def _finish_distributed(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from hypoderm.checkpoint import CheckpointError
    from hypoderm.data.dataset import DatasetError

    try:
        cfg = config_from_args(args)
        train(cfg)
    except (TrainError, DatasetError, CheckpointError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"hypoderm train: error: {e}", file=sys.stderr)
        return 2
    return 0
