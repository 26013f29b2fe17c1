"""Shared test fixtures: small synthetic image datasets that tiny models can learn.

Torch is not imported here (some tests check that torch-free paths stay torch-free); when a test
has imported it, every test runs with one CPU thread.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hypoderm_testkit.datasets import make_csv_manifest, make_image_folder

# The real data, outside the repository: $HYPODERM_SHARED names a folder holding data/ (and weights/); without it,
# ../shared beside the repository. Every real-data test reads these (and skips when they are absent).
SHARED_ENV = "HYPODERM_SHARED"
SHARED = Path(os.environ.get(SHARED_ENV) or Path(__file__).resolve().parents[2] / "shared").expanduser()
REAL_DATA = SHARED / "data" / "hypopigmented"
MULTISOURCE = SHARED / "data" / "multisource" / "index.csv"


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes x 8 images, 48 px PNG."""
    return make_image_folder(tmp_path / "data")


@pytest.fixture
def csv_manifest(tmp_path: Path) -> Path:
    """2 classes x 6 patients x 2 images, with group (patient), skin_type and an extra column."""
    return make_csv_manifest(tmp_path / "csvdata")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small exported CNN (64 px, 3 classes) per the hypoderm-onnx/1 contract (hypoderm_testkit.app)."""
    from hypoderm_testkit.app import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained 2-class checkpoint (hypoderm_testkit.export.tiny_checkpoint)."""
    from hypoderm_testkit.export import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture
def real_data_dir() -> Path:
    """The real photos ($HYPODERM_SHARED or ../shared: data/hypopigmented); skips the test when they are absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA} (set {SHARED_ENV} to the folder holding data/)")
    return REAL_DATA


@pytest.fixture
def multisource_csv() -> Path:
    """The multisource manifest ($HYPODERM_SHARED or ../shared: data/multisource/index.csv, with an `origin`
    column); skips the test when it is absent."""
    if not MULTISOURCE.is_file():
        pytest.skip(f"real data not found at {MULTISOURCE} (set {SHARED_ENV} to the folder holding data/)")
    return MULTISOURCE


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    # Only if a test already imported torch: importing it here would defeat torch-free checks.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests without CUDA (torch is imported only when such a test was collected)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)
