"""How numbers and lists are written in reports and error messages: one way each. Imports nothing of hypoderm."""

from __future__ import annotations

import math
from collections.abc import Sequence


def fmt(x: float | None, spec: str = ".3f", missing: str = "-") -> str:
    """`x` formatted with `spec`, or `missing` for None, NaN and infinities."""
    return missing if x is None or not math.isfinite(x) else format(x, spec)


def pct(x: float | None, missing: str = "-") -> str:
    """A share as a whole percentage ("<1%" for a small share that is not zero); `missing` for no number."""
    if x is None or not math.isfinite(x):
        return missing
    return "<1%" if 0 < x < 0.005 else f"{x:.0%}"


def listing(items: Sequence[str], limit: int = 20) -> str:
    """'a, b, c' or 'a, b, ... and 18 more' past `limit` items."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def comma_list(text: str | None) -> list[str]:
    """A comma-separated option value (e.g. `--outliers-exclude a,b`) as its items, stripped, empty ones dropped."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]
