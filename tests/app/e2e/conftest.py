"""The browser tests' fixtures: a headless Chromium per test module, the models they load (made once per session)
and `hypoderm serve` apps on a free port (one per test module, so that no module sees another's predictions)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hypoderm_testkit.browser import LiveServer, launch_browser, live_server
from hypoderm_testkit.page import TWO_CLASSES, constant_model_dir


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launch_browser() as b:
        yield b


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN (random weights, outputs that differ by input) at 224 px, 3 classes."""
    from hypoderm_testkit.app import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("e2e_model"), size=224, temperature=0.5, abstain_threshold=0.5)


@pytest.fixture(scope="module")
def live(model_dir: Path) -> Iterator[LiveServer]:
    with live_server(model_dir) as srv:
        yield srv


@pytest.fixture(scope="session")
def sure_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Vitiligo at 0.9996 for every skin photo: must read ">99%", never "100%"."""
    p = 0.9996
    return constant_model_dir(tmp_path_factory.mktemp("sure"), [0.0, float(np.log(p / (1 - p)))])


@pytest.fixture(scope="module")
def sure_live(sure_model_dir: Path) -> Iterator[LiveServer]:
    with live_server(sure_model_dir) as srv:
        yield srv


@pytest.fixture(scope="session")
def unsure_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Normal skin 0.55 / vitiligo 0.45, below the 0.6 threshold: uncertain."""
    return constant_model_dir(tmp_path_factory.mktemp("unsure"), [float(np.log(0.55 / 0.45)), 0.0])


@pytest.fixture(scope="module")
def unsure_live(unsure_model_dir: Path) -> Iterator[LiveServer]:
    with live_server(unsure_model_dir) as srv:
        yield srv


@pytest.fixture(scope="session")
def cam_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnv3s (random weights, a preference for class 1: hypoderm_testkit.app.confident) exported with the Grad-CAM
    outputs; threshold 0: every skin photo is an answer."""
    import torch

    from hypoderm.models import create_model
    from hypoderm_testkit.app import build_model_dir, confident

    torch.manual_seed(0)
    return build_model_dir(tmp_path_factory.mktemp("cam"), size=224, classes=TWO_CLASSES, temperature=1.0,
                           abstain_threshold=0.0, model_name="mnv3s",
                           model=confident(create_model("mnv3s", num_classes=2)))


@pytest.fixture(scope="session")
def unsure_cam_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnv3s with the Grad-CAM outputs and an abstain threshold no answer reaches: every skin photo is uncertain."""
    import torch

    from hypoderm.models import create_model
    from hypoderm_testkit.app import build_model_dir

    torch.manual_seed(0)
    return build_model_dir(tmp_path_factory.mktemp("unsure_cam"), size=224, classes=TWO_CLASSES, temperature=1.0,
                           abstain_threshold=0.999, model_name="mnv3s", model=create_model("mnv3s", num_classes=2))
