"""Write docs/predict.schema.json and docs/PREDICT_SCHEMA.md from the Pydantic models of the `hypoderm predict
--json` document (hypoderm.inference.answers), so the documentation cannot drift from them.

    PYTHONPATH=src python scripts/write_predict_schema.py          # rewrite both files
    PYTHONPATH=src python scripts/write_predict_schema.py --check   # exit 1 when they are out of date

tests/commands/test_predict_schema.py runs `render()` and compares it with the committed files."""

from __future__ import annotations

import argparse
import json
import sys
from inspect import cleandoc
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from hypoderm.inference.answers import (
    STATUS_RULES,
    FileError,
    FilePrediction,
    ModelProblem,
    ModelSummary,
    OodStats,
    PredictDocument,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCHEMA_FILE, MARKDOWN_FILE = DOCS / "predict.schema.json", DOCS / "PREDICT_SCHEMA.md"

EXAMPLE: dict[str, Any] = {
    "format": "hypoderm-predict/1",
    "hypoderm_version": "0.1.0",
    "model": {"path": "model.onnx", "model_name": "hypodermnet", "version": "0.1.0", "precision": "fp32",
              "class_names": ["normal_skin", "other_lesion", "vitiligo"], "abstain_threshold": 0.6,
              "answer_thresholds": {"vitiligo": 0.8},
              "temperature": 1.0, "problems": []},
    "results": [
        {"file": "a.jpg", "status": "ok", "answer": "vitiligo", "reason": None,
         "top_k": [{"label": "vitiligo", "probability": 0.93}, {"label": "normal_skin", "probability": 0.05},
                   {"label": "other_lesion", "probability": 0.02}],
         "probabilities": {"normal_skin": 0.05, "other_lesion": 0.02, "vitiligo": 0.93},
         "ood": {"skin_fraction": 0.71, "gate_score": 4.1, "skin_score": 6.2, "max_logit": 3.2, "luma_mean": 141.0,
                 "is_skin": True, "answerable": True, "reason": None},
         "message": "Most likely: Vitiligo (93%), of the classes this model knows. Decision aid, not a medical "
                    "device.", "cam": None},
        {"file": "c.png", "status": "not_skin", "answer": None, "reason": "not_skin_like", "top_k": [],
         "probabilities": {"normal_skin": 0.51, "other_lesion": 0.30, "vitiligo": 0.19},
         "ood": {"skin_fraction": 0.92, "gate_score": -9.3, "skin_score": -7.5, "max_logit": 0.4, "luma_mean": 170.2,
                 "is_skin": False, "answerable": False, "reason": "not_skin_like"},
         "message": "Not analysed: this looks like a texture, an object or a drawing rather than a photo of skin. "
                    "Take a close, well-lit photo of the skin area.",
         "cam": None},
        {"file": "b.pdf", "status": "error", "error": "not an image file (PDF document)", "reason": "not_image"},
    ],
    "notes": [],
    "disclaimer": "Decision aid, not a medical device.",
}

OTHER_OUTPUTS = """- The server's answer (`POST /api/v1/predict`, the Pydantic `Prediction` in `app/api.py`, shown by
  `/docs`) is a prediction's fields too (without `file` and `cam`; with the photo's `image` size, `inference`, and
  `gradcam` when asked for), except that its `probabilities` is **`null` for `not_skin`**: a picture the service
  refused gets no class probabilities.
- The text output (without `--json`) ends, when some files failed, with their count by reason ("3 of 12 files not
  predicted: 2 not_a_file, 1 not_image."). It gives the same answers for people (a "Normal skin" answer names the
  look-alikes that were answered "normal skin" on clinical photos: pityriasis alba, nevus depigmentosus, halo nevus)
  and, once per run after the answers, the model's limits: the hypopigmented conditions with an information card
  (`assets/text/cards.json`, served as /static/data/cards.json) that are not among `class_names`, which the
  model would force into one of its classes, and the examination that tells each apart (`hypoderm.cards`)."""


class _NoFieldTitles(GenerateJsonSchema):
    """Pydantic's schema without the title it makes up for every field ("Skin Fraction")."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def schema() -> dict[str, Any]:
    out = PredictDocument.model_json_schema(schema_generator=_NoFieldTitles)
    return {key: out.pop(key) for key in ("$schema", "$id", "title")} | out


def _type(info: dict[str, Any]) -> str:
    """A field's JSON type in a few characters, for the field lists."""
    if "$ref" in info:
        return "object"
    if "anyOf" in info:
        return " or ".join(dict.fromkeys(_type(i) for i in info["anyOf"]))
    if "const" in info or "enum" in info:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in info.get("enum", [info.get("const")]))
    if info.get("type") == "array":
        return f"array of {_type(info.get('items', {}))}"
    return str(info.get("type", "any"))


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    props = model.model_json_schema(schema_generator=_NoFieldTitles)["properties"]
    lines = []
    for name, field in model.model_fields.items():
        text = f"- `{prefix}{name}` ({_type(props[name])})"
        lines.append(text + (f": {field.description}." if field.description else ""))
    return [line.replace("` or `", "` \\| `") for line in lines]


def markdown() -> str:
    example = json.dumps(PredictDocument.model_validate(EXAMPLE).model_dump(mode="json"), indent=2)
    from hypoderm.commands.predict import EXIT_CODES

    sections = [
        f"# `hypoderm predict --json` output (format `{EXAMPLE['format']}`)",
        "Written by `scripts/write_predict_schema.py` from the Pydantic models in `src/hypoderm/inference/answers.py`"
        " (edit those and rerun it; `tests/commands/test_predict_schema.py` fails when this file is out of date). "
        "Machine-checkable JSON Schema: [`predict.schema.json`](predict.schema.json) (draft 2020-12; "
        "`tests/commands/test_predict.py` validates real output against it with `jsonschema`).",
        f"```json\n{example}\n```",
        "## The document\n" + "\n".join(_fields(PredictDocument)),
        "## `model`\n" + "\n".join(_fields(ModelSummary, "model.") + _fields(ModelProblem, "model.problems[].")),
        f"## A prediction (`status` in `ok | uncertain | not_skin`)\n{cleandoc(FilePrediction.__doc__ or '')}\n\n"
        + "\n".join(_fields(FilePrediction)),
        "### `ood`\n" + f"{cleandoc(OodStats.__doc__ or '')}\n\n" + "\n".join(_fields(OodStats, "ood.")),
        f"### {STATUS_RULES}",
        f"## An error (`status: \"error\"`)\n{cleandoc(FileError.__doc__ or '')}\n\n" + "\n".join(_fields(FileError)),
        "## Other outputs\n" + OTHER_OUTPUTS,
        "## Exit codes (also in `hypoderm predict --help`)\n"
        + "\n".join("- {}: {}".format(*line.strip().split(maxsplit=1)) for line in EXIT_CODES.splitlines()[1:]),
    ]
    return "\n\n".join(sections) + "\n"


def render() -> dict[Path, str]:
    """The files' contents, as the committed ones must be."""
    return {SCHEMA_FILE: json.dumps(schema(), indent=2) + "\n", MARKDOWN_FILE: markdown()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say whether the files are up to date (exit 1 if not)")
    args = ap.parse_args()
    stale = [path for path, text in render().items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run scripts/write_predict_schema.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in render().items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
