"""The layering rules of docs/ARCHITECTURE.md, checked on the source (every import statement, including
the lazy ones inside functions) and, for the torch-free side, on what a fresh interpreter loads.

    models            never imports data, engine (a model is a model, whatever the data)
    data              never imports engine (datasets, splits and audits work without a training loop)
    inference, app    never import engine, models, checkpoint, export, torch or torchvision (the phone /
                      server path runs on ONNX Runtime + numpy + Pillow)

and, for every package and top-level module of src/hypoderm, the layer order LAYERS: nothing imports a layer above
its own, nor anything else in its own layer, so no two of them import each other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

TORCH_SIDE = ("hypoderm.engine", "hypoderm.models", "hypoderm.checkpoint", "hypoderm.export", "torch", "torchvision")
RULES: dict[str, tuple[str, ...]] = {
    "hypoderm.models": ("hypoderm.data", "hypoderm.engine"),
    "hypoderm.data": ("hypoderm.engine",),
    "hypoderm.inference": TORCH_SIDE,
    "hypoderm.app": TORCH_SIDE,
}


# The layers of src/hypoderm, bottom first: the packages (hypoderm.data, ...) and the top-level modules
# (hypoderm.cards, ...). A unit imports only units of lower layers (docs/ARCHITECTURE.md draws the same order).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "text", "metrics", "progress"),  # plain helpers: the error base, formatting, metrics, progress bars
    ("imaging",),  # torch-free image loading and colour rules
    ("cards", "model_quality"),  # what people read; is a trained model broken
    ("inference",),  # the ONNX Runtime path: preprocessing, not-skin check, metadata, predictor, Grad-CAM
    ("data",),  # dataset index, splits, audits, SCIN import
    ("models",),  # the model zoo (torch)
    ("checkpoint",),  # the checkpoint format
    ("engine",),  # training, evaluation, cross-validation
    ("export",),  # ONNX / INT8 export
    ("app",),  # the web app and its API (torch-free: RULES)
    ("study",),  # what bench and compare run: the zoo benchmark and the comparison study
    ("commands",),  # one module per command: options + run
    ("cli",),  # finds the command (imports it by name)
]


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, relative ones resolved against its package."""
    name = module_name(path, src)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            # `from hypoderm import engine` imports hypoderm.engine
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(layer: str, forbidden: tuple[str, ...], src: Path = SRC) -> list[str]:
    out = []
    folder = src / Path(*layer.split("."))
    files = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
    for path in files:
        for line, mod in imported_modules(path, src):
            if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(src)}:{line} imports {mod}")
    return out


def unit_of(module: str) -> str | None:
    """`hypoderm.data.scin.fetch` -> "data" (the package or top-level module of src/hypoderm); None outside."""
    parts = module.split(".")
    return parts[1] if parts[0] == "hypoderm" and len(parts) > 1 and parts[1] != "__version__" else None


def layer_violations(layers: list[tuple[str, ...]], src: Path = SRC) -> list[str]:
    """Imports of a unit in the same or a higher layer (every import statement, lazy ones included)."""
    level = {unit: i for i, units in enumerate(layers) for unit in units}
    out = []
    for path in sorted((src / "hypoderm").rglob("*.py")):
        me = unit_of(module_name(path, src))
        if me is None:  # hypoderm/__init__.py
            continue
        if me not in level:
            out.append(f"{path.relative_to(src)}: {me} is in no layer of LAYERS")
            continue
        seen = set()
        for line, mod in imported_modules(path, src):
            other = unit_of(mod)
            if other is not None and other != me and level.get(other, len(layers)) >= level[me] \
                    and (line, other) not in seen:
                seen.add((line, other))
                out.append(f"{path.relative_to(src)}:{line} imports {mod} (layer {level.get(other, '?')}; "
                           f"{me} is layer {level[me]})")
    return out


def test_no_package_imports_one_above_it_or_beside_it() -> None:
    """The layer order: a package never imports a package above it, and no two packages import each other."""
    assert layer_violations(LAYERS) == []


def test_the_layer_checker_sees_upward_sideways_and_lazy_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "hypoderm"
    for name in ("low", "mid", "side", "high"):
        (pkg / name).mkdir(parents=True)
        (pkg / name / "__init__.py").write_text("")
    (pkg / "low" / "up.py").write_text("def f():\n    from hypoderm.high import x\n")
    (pkg / "mid" / "ok.py").write_text("from hypoderm.low import up\nfrom hypoderm.mid import ok\n")
    (pkg / "mid" / "sideways.py").write_text("from ..side import y\n")
    (pkg / "orphan.py").write_text("")
    found = layer_violations([("low",), ("mid", "side"), ("high",)], src=tmp_path)
    assert [f.split(" ")[0] for f in found] == ["hypoderm/low/up.py:2", "hypoderm/mid/sideways.py:1",
                                                "hypoderm/orphan.py:"]


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_follow_the_rules(layer: str) -> None:
    assert violations(layer, RULES[layer]) == []


def test_the_package_never_imports_the_testkit() -> None:
    """hypoderm_testkit (what tests and benchmarks build their inputs with) is not in the wheel: hypoderm must not
    need it."""
    assert violations("hypoderm", ("hypoderm_testkit",)) == []


def test_the_checker_sees_lazy_relative_and_from_imports(tmp_path: Path) -> None:
    """A rule test that cannot fail is worth nothing: plant each kind of forbidden import and see it caught."""
    pkg = tmp_path / "hypoderm" / "app"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "lazy.py").write_text("def f():\n    import torch\n    return torch\n")
    (pkg / "rel.py").write_text("from ..engine import train\n")
    (pkg / "named.py").write_text("from hypoderm import checkpoint\n")
    (pkg / "fine.py").write_text("from hypoderm.inference import prepare\nimport numpy\n")
    found = violations("hypoderm.app", TORCH_SIDE, src=tmp_path)
    assert {f.split(":")[0] for f in found} == {"hypoderm/app/lazy.py", "hypoderm/app/rel.py", "hypoderm/app/named.py"}
    assert any("lazy.py:2 imports torch" in f for f in found)
    assert any("rel.py:1 imports hypoderm.engine" in f for f in found)
    assert any("named.py:1 imports hypoderm.checkpoint" in f for f in found)


def test_the_inference_path_loads_no_torch() -> None:
    """What a fresh interpreter loads for `predict` with an ONNX model and for `serve`: no torch at all."""
    code = ("import sys, hypoderm.inference, hypoderm.inference.explain, hypoderm.app.server, "
            "hypoderm.inference.files, hypoderm.commands.predict, hypoderm.commands.serve; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision') "
            "or m.startswith(('hypoderm.engine', 'hypoderm.models', 'hypoderm.checkpoint'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
