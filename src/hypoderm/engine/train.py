"""`hypoderm train`: train one model on one fold (torchvision-references shape).

`train(config)` only wires objects together: the epoch loop (`train_one_epoch`, `validate`, the optimiser and its
schedule) is `hypoderm.engine.loop`, the fold's data come from `hypoderm.engine.fold`, device and seeds from
`hypoderm.engine.runtime`.
Multi-GPU: launch with `torchrun --nproc_per_node N -m hypoderm.cli train ...` (DDP; nccl on CUDA,
gloo on CPU); rank 0 alone validates, logs and writes checkpoints.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel  # cheap: torch.optim is already loaded by torch
from torch.utils.data import DataLoader

from hypoderm.checkpoint import FORMAT, save_atomic
from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.config import PROTOCOL_KEYS, RECIPES, TrainConfig, TrainError
from hypoderm.engine.data import (
    CachedImageDataset,
    build_eval_loader,
    build_train_loader,
    class_weights,
    eval_transform,
    train_transform,
)
from hypoderm.engine.fold import FoldData, prepare_fold
from hypoderm.engine.loop import lr_lambdas, make_optimizer, train_one_epoch, validate
from hypoderm.engine.mixstyle import MixStyle
from hypoderm.engine.runtime import (
    configure_backends,
    finish_distributed,
    init_distributed,
    predict_logits,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from hypoderm.inference.preprocess import PreprocessSpec
from hypoderm.models import canonical_name, weights_record
from hypoderm.text import comma_list


# ------------------------------------------------------------------------------------------------ data
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


# -------------------------------------------------------------------------------------- checkpoints
def checkpoint_dict(cfg: TrainConfig, state_dict: dict[str, torch.Tensor], data: FoldData, spec: PreprocessSpec,
                    epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    counts = {c: int((data.labels[data.train_idx] == i).sum()) for i, c in enumerate(data.class_names)}
    return {
        "format": FORMAT, "model_name": cfg.model, "architecture": canonical_name(cfg.model),
        "num_classes": len(data.class_names), "model_kwargs": {},
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "class_names": list(data.class_names), "preprocess": spec.to_dict(),
        "config": cfg.to_dict(), "split": data.split.to_dict(), "epoch": epoch, "metrics": metrics,
        "pretrained": weights_record(cfg.pretrained, cfg.model),  # {"file", "sha256"}, None from scratch
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


def calibrate_best(best: dict[str, Any], model: nn.Module, val_loader: DataLoader, device: torch.device,
                   cfg: TrainConfig, closeups: DataLoader | None = None) -> dict[str, Any]:
    """The finished checkpoint: the best epoch's weights (`best`, a `checkpoint_dict`) with temperature,
    abstain threshold and max-logit stats fitted on validation, marked `complete`.

    With `closeups` (the validation photos' close-up views; used when the recipe trains on close-ups,
    as the app shows a user-framed square) temperature and abstain threshold are fitted on the centre
    crops and the close-ups together: on the development photos a threshold fitted on centre crops
    alone answered 35% of test-fold close-ups at 76% accuracy, against its 95% target
    (benchmarks/shortcut/README.md). The max-logit floor stays on the centre crops.
    """
    from hypoderm.engine.calibration import choose_abstain_threshold, fit_temperature, max_logit_stats
    from hypoderm.inference import softmax
    from hypoderm.metrics import expected_calibration_error

    ckpt = dict(best)
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
    ckpt.update(temperature=t, abstain_threshold=abstain["threshold"], ood=max_logit_stats(centre_logits),
                complete=True)
    ckpt["metrics"] = {**ckpt["metrics"], "val/ece_before": expected_calibration_error(softmax(logits), y),
                       "val/ece_after": expected_calibration_error(probs, y), "val/temperature": t,
                       "val/abstain": abstain,
                       # how often each class was predicted: a collapsed model predicts only one
                       "val/predicted_counts": np.bincount(logits.argmax(1), minlength=logits.shape[1]).tolist(),
                       "val/n_photos": len(centre_logits)}  # the counts also cover the close-ups, when fitted on them
    return ckpt


# --------------------------------------------------------------------------------------------- main
def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.model}-fold{cfg.fold}"


@dataclass
class _Runtime:
    """Where this process trains: its DDP rank, the world size and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def log(self, msg: str) -> None:
        if self.is_main:
            print(msg, flush=True)


@dataclass
class _Loop:
    """The objects the epochs update: what last.pt saves and a resume restores."""

    model: nn.Module
    train_model: nn.Module  # `model`, or its DDP wrapper
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    val_criterion: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    generator: torch.Generator
    early: dict[str, Any]
    outlier_loader: DataLoader | None = None
    outlier_generator: torch.Generator | None = None
    mixstyle: MixStyle | None = None  # training-only hooks on the model (cfg.mixstyle > 0)
    # the best epoch so far as a checkpoint dict: kept here and in last.pt, written as best.pt once, calibrated
    best: dict[str, Any] | None = None

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def _setup_runtime(cfg: TrainConfig) -> _Runtime:
    rank, world, local_rank = init_distributed(cfg.device)
    device = resolve_device(cfg.device, local_rank)
    configure_backends(cfg.deterministic, device.type == "cuda")
    return _Runtime(rank, world, local_rank, device)


def _resume_config(cfg: TrainConfig, run_dir: Path) -> tuple[TrainConfig, dict[str, Any] | None]:
    """(config, last.pt) of the run to resume, or (cfg, None) for a new run; refuses to overwrite a run."""
    from hypoderm.checkpoint import load_checkpoint

    last_path = run_dir / "last.pt"
    if not cfg.resume:
        if last_path.is_file():
            raise TrainError(f"{run_dir} already holds a run (last.pt); pass --resume or choose another --out")
        return cfg, None
    if not last_path.is_file():
        raise TrainError(f"--resume: no {last_path} to resume from")
    ckpt = load_checkpoint(last_path)
    # the saved config wins: same data, split, model and recipe; only the run-control flags change. A flag that
    # would change the experiment is refused, not silently dropped
    saved = TrainConfig.from_dict(ckpt["config"])
    changed = [k for k in (*PROTOCOL_KEYS, "fold", "final") if getattr(saved, k) != getattr(cfg, k)]
    if changed:
        said = "; ".join(f"{k} {getattr(saved, k)!r} there, {getattr(cfg, k)!r} now" for k in changed)
        raise TrainError(f"--resume: {run_dir} holds a run with other settings ({said}); resume it with the flags "
                         "it was started with, or start a new run with another --out")
    return saved.with_(resume=True, stop_after_epoch=cfg.stop_after_epoch, progress=cfg.progress,
                       workers=cfg.workers, device=cfg.device, out=str(run_dir)), ckpt


def _fold_data(cfg: TrainConfig, run_dir: Path, cache: DecodedCache, rt: _Runtime, check_leaks: bool) -> FoldData:
    if rt.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob("*.pt.*.tmp"):  # a half-written checkpoint of a killed run
            stale.unlink()
    if rt.world > 1:
        # rank 0 draws and writes the split first, so every rank trains on the same folds
        if rt.is_main and not cfg.split:
            prepare_fold(cfg, run_dir, cache, check_leaks=False)
        dist.barrier()
    return prepare_fold(cfg, run_dir, cache, write_split=rt.is_main, progress=cfg.progress and rt.is_main,
                        check_leaks=check_leaks)


def _build_model(cfg: TrainConfig, k: int, rt: _Runtime) -> tuple[nn.Module, AveragedModel | None, nn.Module]:
    """(model, EMA copy or None, the module to train: the model or its DDP wrapper)."""
    from hypoderm.models import create_model

    seed_everything(cfg.seed)  # same initial weights on every rank and every run
    model = create_model(cfg.model, num_classes=k, pretrained=cfg.pretrained).to(rt.device)
    if cfg.bn_momentum is not None:
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.momentum = cfg.bn_momentum
    if rt.on_cuda:
        model = model.to(memory_format=torch.channels_last)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    train_model: nn.Module = model
    if rt.world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[rt.local_rank] if rt.on_cuda else None)
    return model, ema, train_model


def _build_loop(cfg: TrainConfig, data: FoldData, spec: PreprocessSpec, rt: _Runtime) -> _Loop:
    """Model, loaders, losses, optimiser, schedule and AMP scaler of a fresh run."""
    k = len(data.class_names)
    model, ema, train_model = _build_model(cfg, k, rt)
    mixstyle = None
    if cfg.mixstyle > 0:  # after the EMA copy, which stays without hooks (it is only evaluated)
        mixstyle = MixStyle(cfg.mixstyle, cfg.mixstyle_alpha)
        try:
            mixstyle.attach(model)
        except ValueError as e:
            raise TrainError(f"--mixstyle: {e}") from None
    xs, ys = data.subset(data.train_idx)
    train_ds = CachedImageDataset(xs, ys, train_transform(spec, cfg.recipe, counterfactual_for(cfg, data.class_names)))
    balance = cfg.balance
    if balance == "sampler" and rt.world > 1:
        rt.log("note: --balance sampler is not combined with DDP sharding; using a class-weighted loss instead"
               + (f" (and no balancing by {cfg.balance_by})" if cfg.balance_by else ""))
        balance = "loss"
    cells = data.column_values(data.train_idx, cfg.balance_by) if cfg.balance_by else None
    generator = torch.Generator()
    train_loader = build_train_loader(train_ds, batch_size=cfg.batch_size, workers=cfg.workers, balance=balance,
                                      num_classes=k, generator=generator, distributed=rt.world > 1, seed=cfg.seed,
                                      pin_memory=rt.on_cuda, cells=cells)
    vx, vy = data.subset(data.val_idx)
    val_loader = build_eval_loader(CachedImageDataset(vx, vy, eval_transform(spec)), batch_size=cfg.batch_size,
                                   workers=cfg.workers, pin_memory=rt.on_cuda)
    outlier_loader, outlier_generator = None, None
    if cfg.outlier_exposure > 0:
        from hypoderm.engine.outliers import OutlierDataset, load_bank

        bank = load_bank(spec, cfg.cache_dir)
        if cfg.outliers:
            from hypoderm.engine.outliers import real_bank

            bank = [*bank, *real_bank(cfg.outliers, spec, exclude=comma_list(cfg.outliers_exclude),
                                      cache_dir=cfg.cache_dir, log=rt.log)]
        outlier_ds = OutlierDataset(bank, train_transform(spec, "standard"))
        outlier_generator = torch.Generator()
        outlier_loader = build_train_loader(outlier_ds, batch_size=max(1, cfg.batch_size // 4), workers=cfg.workers,
                                            balance="none", num_classes=k, generator=outlier_generator,
                                            seed=cfg.seed + 1, pin_memory=rt.on_cuda)
        rt.log(f"outlier exposure: {len(bank)} pictures that are not skin, weight {cfg.outlier_exposure}")
    weight = class_weights(ys, k).to(rt.device) if balance == "loss" else None
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = len(train_loader) if cfg.max_steps is None else min(len(train_loader), cfg.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambdas(optimizer, cfg, steps_per_epoch))
    return _Loop(model=model, train_model=train_model, ema=ema, optimizer=optimizer, scheduler=scheduler,
                 scaler=torch.amp.GradScaler("cuda", enabled=cfg.amp and rt.on_cuda),
                 criterion=nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing),
                 val_criterion=nn.CrossEntropyLoss(),  # plain NLL on validation, comparable across recipes
                 train_loader=train_loader, val_loader=val_loader, generator=generator,
                 early={"best": -1.0, "best_epoch": 0, "bad_epochs": 0}, outlier_loader=outlier_loader,
                 outlier_generator=outlier_generator, mixstyle=mixstyle)


def _restore(ckpt: dict[str, Any] | None, loop: _Loop, run_dir: Path, rt: _Runtime) -> int:
    """Load last.pt's training state into `loop` (or start a fresh log); returns the first epoch to run."""
    log_path = run_dir / "metrics.jsonl"
    if ckpt is None:
        if rt.is_main and log_path.exists():
            log_path.unlink()
        return 1
    loop.model.load_state_dict(ckpt["state_dict_train"])
    loop.optimizer.load_state_dict(ckpt["optimizer"])
    loop.scheduler.load_state_dict(ckpt["scheduler"])
    loop.scaler.load_state_dict(ckpt["scaler"])
    if loop.ema is not None and ckpt.get("ema") is not None:
        loop.ema.load_state_dict(ckpt["ema"])
    loop.early = dict(ckpt["early_stop"])
    loop.best = ckpt.get("best")
    set_rng_state(ckpt["rng"])
    start_epoch = int(ckpt["epoch"]) + 1
    if rt.is_main and log_path.is_file():  # drop log lines of epochs that will be redone
        rows = [r for r in log_path.read_text().splitlines() if r.strip() and json.loads(r)["epoch"] < start_epoch]
        log_path.write_text("".join(r + "\n" for r in rows))
    rt.log(f"resumed from {run_dir / 'last.pt'} after epoch {start_epoch - 1}")
    return start_epoch


def _end_epoch(cfg: TrainConfig, epoch: int, tr: dict[str, float], t0: float, loop: _Loop, data: FoldData,
               spec: PreprocessSpec, run_dir: Path, rt: _Runtime) -> bool:
    """Validate (rank 0), update early stopping, write best.pt, the metrics row and last.pt; True to stop."""
    stop = False
    if rt.is_main:
        va = validate(loop.eval_model, loop.val_loader, loop.val_criterion, rt.device,
                      amp=loop.scaler.is_enabled(), channels_last=rt.on_cuda)
        row = {"epoch": epoch, "train/loss": tr["loss"], "train/accuracy": tr["accuracy"],
               "val/loss": va["loss"], "val/accuracy": va["accuracy"], "val/macro_f1": va["macro_f1"],
               "lr": max(g["lr"] for g in loop.optimizer.param_groups),  # the head's rate
               "train/images_per_s": tr["images_per_s"] * rt.world,
               "time_s": time.perf_counter() - t0}
        early = loop.early
        improved = va["macro_f1"] > early["best"] + 1e-9
        if improved:
            early.update(best=va["macro_f1"], best_epoch=epoch, bad_epochs=0)
            loop.best = checkpoint_dict(cfg, loop.eval_model.state_dict(), data, spec, epoch,
                                        {f"val/{k}": v for k, v in va.items()})
        else:
            early["bad_epochs"] += 1
        last = checkpoint_dict(cfg, loop.eval_model.state_dict(), data, spec, epoch, row)
        last.update(state_dict_train=loop.model.state_dict(), optimizer=loop.optimizer.state_dict(),
                    scheduler=loop.scheduler.state_dict(), scaler=loop.scaler.state_dict(),
                    ema=loop.ema.state_dict() if loop.ema is not None else None, rng=rng_state(),
                    early_stop=dict(early), best=loop.best)
        # The row goes to disk before last.pt: a kill between the two then loses nothing (a resume
        # drops rows of epochs after last.pt's and redoes them), where the other order lost the row.
        with (run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        save_atomic(last, run_dir / "last.pt")
        rt.log(f"epoch {epoch:>3}/{cfg.epochs}  train/loss {tr['loss']:.4f}  val/loss {va['loss']:.4f}  "
               f"val/accuracy {va['accuracy']:.3f}  val/macro_f1 {va['macro_f1']:.3f}  "
               f"lr {row['lr']:.2e}  {row['train/images_per_s']:.1f} img/s  {row['time_s']:.1f}s"
               + ("  *best" if improved else ""))
        stop = early["bad_epochs"] >= cfg.patience
    if rt.world > 1:
        flag = [stop]
        dist.broadcast_object_list(flag, src=0)
        stop = bool(flag[0])
    if stop:
        rt.log(f"early stop: no val/macro_f1 gain for {cfg.patience} epochs (best {loop.early['best']:.3f} "
               f"at epoch {loop.early['best_epoch']})")
    return stop


def _calibrate_and_check(cfg: TrainConfig, loop: _Loop, data: FoldData, spec: PreprocessSpec, run_dir: Path,
                         rt: _Runtime) -> None:
    """Calibrate best.pt on validation (and its close-ups for crop recipes); warn when the model is broken."""
    from hypoderm.model_quality import checkpoint_problems
    from hypoderm.models import create_model

    best_path = run_dir / "best.pt"
    if loop.best is None:
        raise TrainError("no epoch was validated, so there is no best checkpoint to calibrate")
    closeups = (closeup_loader(data, data.val_idx, spec, cfg.batch_size)
                if cfg.calibrate_closeups and "crop" in RECIPES[cfg.recipe] else None)
    fresh = create_model(cfg.model, num_classes=len(data.class_names)).to(rt.device)
    calibrated = calibrate_best(loop.best, fresh, loop.val_loader, rt.device, cfg, closeups)
    save_atomic(calibrated, best_path)  # the one write of best.pt: complete and calibrated
    m = calibrated["metrics"]
    rt.log(f"best epoch {calibrated['epoch']}: val/macro_f1 {m['val/macro_f1']:.3f}; temperature "
           f"{calibrated['temperature']:.3f}; abstain threshold {calibrated['abstain_threshold']:.3f} "
           f"(coverage {m['val/abstain']['coverage']:.2f}); checkpoint {best_path}")
    for problem in checkpoint_problems(calibrated):  # a broken model must not look finished
        rt.log(f"WARNING: {problem['message']}; `hypoderm export` will refuse this checkpoint without --force")


def train(cfg: TrainConfig, cache: DecodedCache | None = None, *, check_leaks: bool = True) -> Path:
    """Train one fold; returns the run directory (best.pt, last.pt, metrics.jsonl, split.json).

    `cache` lets several runs (the folds of `hypoderm cv`) share decoded images; `check_leaks=False`
    skips the leakage check when the caller has already run it on the same split.
    """
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"--out {run_dir} is a file, not a folder for the run; choose another --out")
    cfg, resume_ckpt = _resume_config(cfg, run_dir)
    canonical_name(cfg.model)  # an unknown model is a ValueError now, not after every photo is decoded
    rt = _setup_runtime(cfg)
    spec = PreprocessSpec.for_size(cfg.size)
    cache = cache or DecodedCache(spec, cfg.cache_dir)
    if cache.spec != spec:
        raise TrainError(f"the image cache was built for {cache.spec}, not {spec}")
    data = _fold_data(cfg, run_dir, cache, rt, check_leaks)
    rt.log(f"{cfg.model}: {len(data.class_names)} classes {data.class_names}; {data.split.fold_name(cfg.fold)} "
           f"({cfg.fold}/{data.split.folds}): {len(data.train_idx)} train, {len(data.val_idx)} val, "
           f"{len(data.test_idx)} test; {len(data.unreadable)} unreadable skipped; device {rt.device}"
           + (f" x{rt.world}" if rt.world > 1 else ""))
    if data.untrained_classes():
        rt.log(f"note: no training photo of {', '.join(data.untrained_classes())} in this fold (its only source is "
               "held out); the model cannot learn that class here, and the fold cannot test it")
    loop = _build_loop(cfg, data, spec, rt)
    start_epoch = _restore(resume_ckpt, loop, run_dir, rt)

    stop = start_epoch > cfg.epochs or loop.early["bad_epochs"] >= cfg.patience
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stop:
            break
        # Every epoch's randomness (order, augmentation, dropout) depends only on (seed, epoch, rank),
        # so a run resumed after epoch e replays epoch e+1 exactly as an uninterrupted run would.
        seed_everything(cfg.seed * 1_000_003 + epoch * 1_009 + rt.rank)
        loop.generator.manual_seed(cfg.seed * 1_000_003 + epoch)
        sampler: Any = loop.train_loader.sampler  # ours and DistributedSampler both have set_epoch
        sampler.set_epoch(epoch)
        if loop.outlier_loader is not None and loop.outlier_generator is not None:
            loop.outlier_generator.manual_seed(cfg.seed * 1_000_003 + epoch + 500_009)
            outlier_sampler: Any = loop.outlier_loader.sampler
            outlier_sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        tr = train_one_epoch(loop.train_model, loop.train_loader, loop.criterion, loop.optimizer, loop.scheduler,
                             rt.device, scaler=loop.scaler, ema=loop.ema, max_steps=cfg.max_steps,
                             channels_last=rt.on_cuda, progress=cfg.progress and rt.is_main,
                             desc=f"epoch {epoch}/{cfg.epochs}", outliers=loop.outlier_loader,
                             outlier_weight=cfg.outlier_exposure, mixstyle=loop.mixstyle,
                             freeze_bn=cfg.freeze_bn)
        stop = _end_epoch(cfg, epoch, tr, t0, loop, data, spec, run_dir, rt)
        if cfg.stop_after_epoch is not None and epoch >= cfg.stop_after_epoch:
            rt.log(f"stopping after epoch {epoch} as asked (--stop-after-epoch); continue with --resume")
            finish_distributed(rt.world)
            return run_dir

    if rt.is_main:
        _calibrate_and_check(cfg, loop, data, spec, run_dir, rt)
    finish_distributed(rt.world)
    return run_dir

# ---------------------------------------------------------------------------------------------- CLI
