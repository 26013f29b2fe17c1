"""Does this look like a photo of skin? The learned check, beside the statistics of `ood` (issue 27).

The statistics gate cannot tell skin from skin-coloured things (bread, clothing, pigs, wood), and a network
fine-tuned on skin forgets what other things look like. The skin check is a separate small network: the first
nine blocks of ImageNet MobileNetV3-Small (frozen, Apache-2.0 weights, sha256 in the block), its last blocks
fine-tuned on real skin photos against real photographs that are not skin, and one logit, `skin_score`
(positive: skin). It is part of the model's own ONNX graph (`hypoderm.export.skincheck.attach`): it reads the
same input tensor as the diagnosis network and answers in the same `session.run`, so the page, the API and the
CLI get the same number with no second download, session or preprocessing.

The model's metadata describes it under `ood.skin_check`:

    {"format": "hypoderm-skincheck/1", "output": "skin_score", "threshold": t, "answer_threshold": a, ...}

A photo whose score is below `threshold` is refused (`not_skin_like`: "does not look like skin"); below
`answer_threshold` its answer is withheld (`unsure_skin`: uncertain, see a dermatologist). Both were chosen on
photos of sources the check never saw (held out by origin, on both sides: benchmarks/nonskin/learned/).
A model without the block (exported before it existed) keeps the statistics gate alone
(the page's twin of this module: static/js/skincheck.js).
"""

from __future__ import annotations

import math
from typing import Any

FORMAT = "hypoderm-skincheck/1"
OUTPUT = "skin_score"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_skin_check(block: Any) -> None:
    """Raise ValueError naming the first bad field of an `ood.skin_check` block (None: no check)."""
    if block is None:
        return
    if not isinstance(block, dict):
        raise ValueError(f"ood.skin_check must be an object, got {type(block).__name__}")
    if block.get("format") != FORMAT:
        raise ValueError(f"ood.skin_check.format must be {FORMAT!r}, got {block.get('format')!r}")
    if not isinstance(block.get("output"), str) or not block["output"]:
        raise ValueError(f"ood.skin_check.output must name an output of the graph, got {block.get('output')!r}")
    for key in ("threshold", "answer_threshold"):
        if not _finite(block.get(key)) or abs(block[key]) > 1e6:
            raise ValueError(f"ood.skin_check.{key} must be a finite number, got {block.get(key)!r}")
    if block["answer_threshold"] < block["threshold"]:
        raise ValueError(f"ood.skin_check.answer_threshold ({block['answer_threshold']}) must not be below its "
                         f"threshold ({block['threshold']})")
    size = block.get("input_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096):
        raise ValueError(f"ood.skin_check.input_size must be a whole number of pixels from 16 to 4096, got {size!r}")


def skin_check_reason(score: float | None, block: dict[str, Any] | None) -> str | None:
    """`not_skin_like` (refuse), `unsure_skin` (withhold) or None, from the check's score (None: no check)."""
    if block is None or score is None:
        return None
    if not math.isfinite(score) or score < float(block["threshold"]):
        return "not_skin_like"  # a NaN score (a broken graph) never passes
    if score < float(block["answer_threshold"]):
        return "unsure_skin"
    return None
