"""Build hook (everything else about the package is in pyproject.toml): a wheel carries the onnxruntime-web files
the page runs the model with, copied from the pinned npm package (node_modules, `make web`) with its licence, so
that a pip-installed hypoderm is the whole app, on-device mode included (hypoderm.app.web_runtime)."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RUNTIME = runpy.run_path(str(ROOT / "src" / "hypoderm" / "app" / "web_runtime.py"))
NPM_PACKAGE = ROOT / "node_modules" / "onnxruntime-web"
# The npm package ships no licence file; this is ONNX Runtime's own (MIT), the project the package is built from.
LICENSE = ROOT / "third_party" / "onnxruntime-web" / "LICENSE"


class BuildPyWithWebRuntime(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install serves the checkout's own node_modules
            return
        dist = NPM_PACKAGE / "dist"
        missing = [f for f in RUNTIME["ORT_FILES"] if not (dist / f).is_file()]
        if missing:
            raise SystemExit(f"hypoderm: {NPM_PACKAGE} lacks {', '.join(missing)}: run `make web` (npm ci) before "
                             "building a wheel, or the installed app cannot run the model on the phone")
        target = Path(self.build_lib) / "hypoderm" / "app" / RUNTIME["VENDOR_DIR"] / "onnxruntime-web"
        (target / "dist").mkdir(parents=True, exist_ok=True)
        for name in RUNTIME["ORT_FILES"]:
            shutil.copyfile(dist / name, target / "dist" / name)
        shutil.copyfile(NPM_PACKAGE / "package.json", target / "package.json")  # its version, for /api/v1/model
        shutil.copyfile(LICENSE, target / "LICENSE")


setup(cmdclass={"build_py": BuildPyWithWebRuntime})
