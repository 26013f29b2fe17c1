"""Checkpoints: one dict, written atomically, self-describing.

Keys (format "hypoderm-checkpoint/1"):
  model_name (as the user named it), architecture (the registry's canonical name, so an alias that
  later points elsewhere cannot change a saved model), num_classes, model_kwargs, state_dict, class_names,
  preprocess (PreprocessSpec dict), config (the training config dict), split (dict or None), epoch,
  metrics (dict), data_summary (dict);
in `best.pt`, which training writes once, when it ends: temperature (float), abstain_threshold (float),
ood (dict: max-logit statistics) and complete (True);
and, in `last.pt` only, the resume state: state_dict_train (the raw weights when `state_dict` holds the
EMA), optimizer, scheduler, scaler, ema, rng, early_stop, best (the best epoch's checkpoint dict so far,
not yet calibrated).
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hypoderm.errors import HypodermError, torch_load_failure

FORMAT = "hypoderm-checkpoint/1"


class CheckpointError(HypodermError, RuntimeError):
    pass


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _safe_globals() -> list[Any]:
    """The only non-torch types a hypoderm checkpoint holds: the NumPy RNG state in `last.pt`'s "rng"
    (`np.random.get_state()`: a uint32 ndarray). Everything else is dicts, lists, numbers, strings and
    tensors, which `weights_only=True` accepts as they are."""
    import numpy as np

    multiarray = importlib.import_module("numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray")
    return [multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without running code from it: `torch.load(weights_only=True)` with the few
    NumPy types of `_safe_globals` allowed. A pickle that names any other global (a crafted `.pt`
    calling `os.system`, say) is refused with a CheckpointError before anything in it runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))  # torch names the global it refused to import
        if found:
            raise CheckpointError(f"{path} was refused: it names {found.group(1)}, and loading it could run code; "
                                  "a hypoderm checkpoint holds only weights and plain data") from e
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({torch_load_failure(e)})") from e
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({torch_load_failure(e)})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a hypoderm checkpoint (expected format {FORMAT!r})")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model of a checkpoint and load its weights (eval mode)."""
    from hypoderm.models import create_model

    name = ckpt.get("architecture", ckpt["model_name"])
    model = create_model(name, num_classes=int(ckpt["num_classes"]), **ckpt.get("model_kwargs", {}))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
