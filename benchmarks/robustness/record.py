"""What every robustness script records beside its counts: the machine, its load at the end, the Python version
and the exact command; and the one way the result is written (JSON file + stdout)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def run_facts() -> dict[str, str]:
    return {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, load average at end {os.getloadavg()[0]:.1f}",
            "python": platform.python_version(), "command": " ".join([Path(sys.executable).name, *sys.argv])}


def write_result(res: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
