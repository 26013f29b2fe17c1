"""The answers' shapes, as Pydantic models: one photo's answer (`PhotoAnswer`, what
`OnnxPredictor.predict_image` returns and hypoderm.inference.predictor.result_from_logits builds) and the
`hypoderm predict --json` document (`PredictDocument`). The server's answer (hypoderm.app.api.Prediction) extends
PhotoAnswer; docs/PREDICT_SCHEMA.md and docs/predict.schema.json are written from these models by
scripts/write_predict_schema.py (tests/commands/test_predict_schema.py checks they are up to date).

Only the documentation, the API and the tests import this module; `predict` itself builds plain dicts."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

OUTPUT_FORMAT = "hypoderm-predict/1"

Probability = Annotated[float, Field(ge=0, le=1)]
RefusalReason = Literal["too_small", "too_dark", "little_skin", "not_skin_like"]
WithholdReason = Literal["unsure_skin", "unusual_logits", "low_confidence"]


class Shape(BaseModel):
    """An answer's part: exactly these fields, no other."""

    model_config = ConfigDict(extra="forbid")


class Candidate(Shape):
    label: str
    probability: Probability


class OodStats(Shape):
    """The not-skin check's statistics and verdict (hypoderm/inference/ood.py)."""

    skin_fraction: Probability = Field(description="fraction of skin-coloured pixels in the square")
    gate_score: float | None = Field(description="the not-skin gate's score; null when the model's metadata "
                                                 "switches the gate off")
    skin_score: float | None = Field(description="the learned skin check's score (hypoderm.inference.skincheck); "
                                                 "null when the model has none. With one, a photo it passes is "
                                                 "never refused by the statistics gate, only withheld")
    max_logit: float = Field(description="the largest logit (an unusually low one withholds the answer)")
    luma_mean: float | None = Field(description="mean luma of the square (too dark below `ood.gate.luma_min`)")
    is_skin: bool = Field(description="false: the photo is refused (status not_skin)")
    answerable: bool = Field(description="false: the answer is refused or withheld")
    reason: RefusalReason | Literal["unsure_skin", "unusual_logits"] | None = Field(
        description="why the check refuses or withholds the answer; null when it passes")


STATUS_RULES = """`status` and `reason` (hypoderm/inference/ood.py and predictor.py)
- `not_skin` (refused, no class) with `reason` `too_small` (the photo, or the framed square, is under 64 pixels
  across), `too_dark` (mean luma below `ood.gate.luma_min`), `little_skin` (skin-colour fraction below
  `ood.skin_fraction_min`) or `not_skin_like` (not-skin gate score below `ood.gate.threshold`, or learned
  skin-check score `skin_score` below `ood.skin_check.threshold`: a texture, object, animal, food or drawing);
- else `uncertain` (the answer is withheld: candidates as equals, see a dermatologist) with `reason` `unsure_skin`
  (gate score below `ood.gate.answer_threshold`, or `skin_score` below `ood.skin_check.answer_threshold`: maybe
  not skin, or an unusual photo), `unusual_logits` (max logit below `ood.max_logit_min`) or `low_confidence` (top
  probability below `model.abstain_threshold`, raised to the chance floor `1/K + 0.25 (1 - 1/K)` when the model's
  own is lower: 0.5 for 3 classes, 0.625 for 2; `hypoderm.model_quality.abstain_floor`, so a model at chance never
  answers `ok`; and for a top class named in `model.answer_thresholds`, below its own higher bar);
- else `ok` (`reason` null)."""


class PhotoAnswer(Shape):
    """One photo's answer (`OnnxPredictor.predict_image`): the verdict, the candidates and the message."""

    status: Literal["ok", "uncertain", "not_skin"] = Field(description="the verdict; see the status rules below")
    answer: str | None = Field(description="the class given as the answer, only when `status` is `ok`; null for "
                                           "`uncertain` (no class is an answer: the message says to see a "
                                           "dermatologist and how to retake the photo and, when the model could "
                                           "not choose (`low_confidence`), names at least three candidates as "
                                           "equals, at any `--top-k`) and for `not_skin`")
    reason: RefusalReason | WithholdReason | None = Field(
        description="why there is no answer: a refusal (not_skin) or a withheld answer (uncertain); null when ok")
    top_k: list[Candidate] = Field(description="the `--top-k` most probable classes, descending; empty for "
                                               "`not_skin` (a rejected photo has no class)")
    probabilities: dict[str, Probability] = Field(
        description="softmax(logits / temperature) for every class (sum 1), raw numbers, kept for every verdict in "
                    "`predict --json` (research use)")
    ood: OodStats
    message: str = Field(description="the answer for people, English, with display names (\"Normal skin\", never "
                                     "`normal_skin`) and honest percentages (whole percent, \">99%\" above 0.99, "
                                     "\"<1%\" below 0.01; never \"100%\")")


def _status_rules() -> dict[str, Any]:
    """The JSON Schema rules tying `answer`, `reason`, `top_k` and `cam` to `status` (STATUS_RULES)."""
    def rule(status: str, then: dict[str, Any]) -> dict[str, Any]:
        return {"if": {"properties": {"status": {"const": status}}}, "then": {"properties": then}}

    return {"allOf": [
        rule("ok", {"answer": {"type": "string"}, "reason": {"const": None}, "top_k": {"minItems": 1}}),
        rule("uncertain", {"answer": {"const": None}, "reason": {"enum": list(get_args(WithholdReason))},
                           "top_k": {"minItems": 1}}),
        rule("not_skin", {"answer": {"const": None}, "reason": {"enum": list(get_args(RefusalReason))},
                          "top_k": {"maxItems": 0}, "cam": {"const": None}}),
    ]}


class FilePrediction(PhotoAnswer):
    """A predicted file: exactly the photo's answer (PhotoAnswer) plus `file` and `cam`."""

    model_config = ConfigDict(json_schema_extra=_status_rules())
    file: str = Field(description="the file, as given or found in a given folder")
    cam: str | None = Field(description="path of the Grad-CAM overlay PNG (`--cam DIR`), written only for an answer "
                                        "(`ok`); null otherwise (`uncertain` and `not_skin` get none: an uncertain "
                                        "result names no class to explain)")


class FileError(Shape):
    """A file that was not predicted (`status: "error"`); any failure of one file is that file's error, and the
    other files are still processed."""

    file: str
    status: Literal["error"]
    error: str = Field(description="the human reason (e.g. from hypoderm.imaging.io.ImageLoadError)")
    reason: Literal["empty", "not_image", "truncated", "corrupt", "too_large", "bad_aspect_ratio", "unreadable",
                    "not_a_file", "not_found", "internal_error"] = Field(
        description="its short code: `bad_aspect_ratio` is longer than 20:1, refused from the header before "
                    "decoding; `not_a_file` an entry that is not a regular file (a broken or looping symbolic link, a "
                    "link to a folder, a named pipe, a device, a socket), reported, never opened (a folder's entries "
                    "are all listed except hidden ones and sub-folders, which are searched); `too_large` also covers "
                    "a file over 256 MiB (`hypoderm.imaging.io.MAX_FILE_BYTES`), refused without being read (or "
                    "`not_image` when its first bytes show a video, a PDF or an archive); `not_found` a path that "
                    "does not exist; `unreadable` also a folder that cannot be listed; `internal_error` when "
                    "processing that one file hit a bug (the message names the exception)")


class ModelProblem(Shape):
    code: Literal["collapsed", "chance_f1", "temperature_bound"]
    message: str


class ModelSummary(Shape):
    """The model that answered."""

    path: str = Field(description="the model file (a folder given as --model: its model.onnx)")
    model_name: str | None
    version: str | None
    precision: Literal["fp32", "int8", "int8-weights"]
    class_names: list[str] = Field(min_length=2)
    abstain_threshold: Probability
    answer_thresholds: dict[str, Probability] = Field(
        description="classes answered only when their probability reaches this higher bar (e.g. a false "
                    "`vitiligo` on healthy skin costs more than a withheld answer); empty: the abstain threshold "
                    "for every class")
    temperature: float = Field(gt=0)
    problems: list[ModelProblem] = Field(
        description="the quality checks the model failed when it was exported with `--force` "
                    "(hypoderm.model_quality); empty for a sound model. When not empty, `notes` and the text output "
                    "start with a warning")


class PredictDocument(Shape):
    """What `hypoderm predict --json` prints: one JSON document for the whole run."""

    model_config = ConfigDict(title=f"hypoderm predict --json output ({OUTPUT_FORMAT})", json_schema_extra={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/hypoderm/hypoderm/docs/predict.schema.json"})
    format: Literal["hypoderm-predict/1"]
    hypoderm_version: str
    model: ModelSummary
    results: list[FilePrediction | FileError] = Field(
        description="one entry per input file, in input order (folders are expanded recursively, sorted)")
    notes: list[str] = Field(description="run-level messages, e.g. that the model has no Grad-CAM outputs "
                                         "(exported before them; re-export it)")
    disclaimer: str
