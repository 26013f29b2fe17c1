"""Issue 30: docs/predict.schema.json and docs/PREDICT_SCHEMA.md are written from the Pydantic models of
hypoderm.inference.answers by scripts/write_predict_schema.py; the committed files must be what it writes now."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from hypoderm.inference.files import OUTPUT_FORMAT

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "write_predict_schema.py"


def _writer():
    spec = importlib.util.spec_from_file_location("write_predict_schema", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_docs_are_what_the_models_give() -> None:
    for path, text in _writer().render().items():
        assert path.read_text() == text, f"{path.name} is out of date: run PYTHONPATH=src python {SCRIPT.name}"


def test_the_schema_holds_the_rules_of_each_status() -> None:
    """The example document fits the schema, and breaking a status rule (an answer without status ok, a refused
    photo with candidates, another format) makes it fail."""
    jsonschema = pytest.importorskip("jsonschema")
    writer = _writer()
    schema, doc = writer.schema(), json.loads(json.dumps(writer.EXAMPLE))
    assert schema["properties"]["format"]["const"] == OUTPUT_FORMAT
    jsonschema.validate(doc, schema)
    for field, value, index in (("answer", "vitiligo", 1), ("top_k", [{"label": "vitiligo", "probability": 0.2}], 1),
                                ("reason", "low_confidence", 0), ("status", "uncertain", 0)):
        bad = json.loads(json.dumps(doc))
        bad["results"][index][field] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
