"""/api/v1: health, model info and predict (FastAPI router). Each route returns its answer's Pydantic model
(below; a photo's answer extends hypoderm.inference.answers.PhotoAnswer), which /openapi.json and /docs show.

A prediction is bounded: it waits for an upload slot while its body arrives (hypoderm.app.admission), counts as
in flight once the upload is complete, and decodes only with one of `max_decodes` slots."""

from __future__ import annotations

import base64
import io
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from starlette.concurrency import run_in_threadpool

from hypoderm import __version__
from hypoderm.app.admission import RELEASE_AFTER_PIXELS, Budget, image_bytes, refuse_if_busy, upload_slot
from hypoderm.app.errors import ApiError
from hypoderm.app.guard import release_memory
from hypoderm.app.state import ServerState, ort_web_version
from hypoderm.imaging.io import MAX_ASPECT_RATIO, SOURCE_SIZE_KEY
from hypoderm.inference.answers import PhotoAnswer, Probability
from hypoderm.inference.metadata import public_metadata
from hypoderm.inference.ood import with_gate
from hypoderm.inference.verdict import MIN_SOURCE_SIDE

# ImageLoadError.reason -> (HTTP status, error code)
LOAD_ERRORS = {
    "empty": (400, "empty_upload"),
    "not_image": (415, "not_an_image"),
    "truncated": (422, "truncated_image"),
    "corrupt": (422, "corrupt_image"),
    "too_large": (413, "too_many_pixels"),
    "bad_aspect_ratio": (422, "bad_aspect_ratio"),
    "unreadable": (422, "unreadable_image"),
}


# ---- the answers (documentation and tests/app/test_app_api.py check the real answers against them) ----------

class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitUse(_Answer):
    in_progress: int
    limit: int


class Load(_Answer):
    predictions: LimitUse
    uploads: LimitUse
    upload_bytes: LimitUse
    slow_uploads: int  # arriving slower than the server's stated rate (only these are capped per address)
    clients_at_upload_limit: int
    saturated: list[Literal["predictions", "uploads", "upload_bytes"]]


class Health(_Answer):
    """Always 200 while the process lives; `status` is "busy" when a limit is reached (`load.saturated`)."""

    status: Literal["ok", "busy"]
    load: Load
    version: str
    model_loaded: bool
    model_name: str | None
    uptime_s: float
    predictions: int
    client_errors: int
    browser_inference: bool


class GradcamInfo(BaseModel):
    """The metadata's Grad-CAM block (output names, layer), with whether the heat map is available and why not."""

    model_config = ConfigDict(extra="allow")
    available: bool
    reason: str | None

    @model_serializer(mode="wrap")
    def _metadata_first(self, handler: SerializerFunctionWrapHandler) -> Any:
        """The metadata's keys first, then `available` and `reason` (the order the page has always read)."""
        data = handler(self)
        own = {k: data.pop(k) for k in ("available", "reason")}
        return {**data, **own}


class BrowserInference(_Answer):
    available: bool
    runtime: str | None
    script: str | None
    wasm_url: str | None
    wasm_bytes: int | None
    reason: str | None


class Limits(_Answer):
    max_upload_bytes: int
    max_pixels: int
    max_aspect_ratio: float
    upload_timeout_s: float


class ModelInfo(_Answer):
    """The model's metadata (the `hypoderm-onnx/1` contract, docs/ARCHITECTURE.md) and how the page gets it."""

    format: str | None
    model_name: str | None
    version: str | None
    precision: str | None
    class_names: list[str]
    input: dict[str, Any] | None
    output: dict[str, Any] | None
    temperature: float
    abstain_threshold: float | None
    answer_thresholds: dict[str, float]
    ood: dict[str, Any] | None
    min_source_side: int
    metrics: dict[str, Any]
    training_data: dict[str, Any] | None
    quality: dict[str, Any]
    disclaimer: str
    model_url: str
    model_sha256: str
    model_bytes: int
    gradcam: GradcamInfo
    browser_inference: BrowserInference
    limits: Limits


class ImageSize(_Answer):
    width: int
    height: int


class Prediction(PhotoAnswer):
    """One photo's answer: the `predict --json` per-image result (docs/PREDICT_SCHEMA.md) plus the photo's own
    size, where it ran, and (with `gradcam=true`) the heat map as a PNG data URL or why there is none (absent
    without `gradcam=true`)."""

    probabilities: dict[str, Probability] | None = Field(  # type: ignore[assignment]
        description="softmax(logits / temperature) for every class; null for a refused picture (status "
                    "not_skin): a picture that is not judged gets no class probabilities")
    gradcam: dict[str, Any] | None = None
    image: ImageSize
    inference: Literal["server"]


class Error(_Answer):
    error: str
    detail: str
    status: int


PREDICT_ERRORS = {
    400: "empty or malformed upload, or one sent in tiny pieces", 408: "upload too slow",
    413: "too many bytes or pixels",
    415: "not an image / wrong Content-Type", 422: "truncated or corrupt image, or extreme aspect ratio",
    429: "too many slow uploads from this client still arriving",
    503: "server busy (too many predictions or uploads in progress)",
}


# ---- the routes ---------------------------------------------------------------------------------------

def get_state(request: Request) -> ServerState:
    """The running app's ServerState (create_app puts it in app.state.hypoderm)."""
    return request.app.state.hypoderm


State = Annotated[ServerState, Depends(get_state)]
router = APIRouter(prefix="/api/v1", tags=["api"])


@router.get("/health", response_model=Health, summary="Liveness, model status and load (status 'busy' at a limit)")
def health(state: State) -> Health:
    load = Load.model_validate(state.load())
    return Health(status="busy" if load.saturated else "ok", load=load, version=__version__, model_loaded=True,
                  model_name=state.metadata.get("model_name"), uptime_s=round(time.time() - state.started, 1),
                  predictions=state.predictions, client_errors=state.client_errors,
                  browser_inference=state.web_assets is not None)


@router.get("/model", response_model=ModelInfo, summary="Classes, version, metrics, preprocessing and thresholds")
def model_info(state: State) -> ModelInfo:
    return _model_info(state)


# `gradcam` is left out of the answer unless it was asked for (a field never set is not sent)
@router.post("/predict", response_model=Prediction, response_model_exclude_unset=True,
             summary="Diagnose one photo (multipart field 'image', or a raw image body)",
             responses={code: {"model": Error, "description": text} for code, text in PREDICT_ERRORS.items()},
             # the body is read by hand (size, pixel and time limits while it arrives), so FastAPI cannot see it:
             # described here, so that /docs can send a photo ("Try it out") and a client generator knows the form
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                     "image": {"type": "string", "format": "binary", "description": "the photo (JPEG, PNG, WebP, "
                               "GIF, BMP, TIFF, PPM or JPEG 2000); the field may also be called 'file'"}}}},
                 "image/*": {"schema": {"type": "string", "format": "binary"}},
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def predict(request: Request, state: State, top_k: int = Query(3, ge=1, le=20),
                  gradcam: bool = Query(False, description="add a Grad-CAM heatmap (needs a model exported "
                                                            "with the Grad-CAM outputs)"),
                  framed: bool = Query(False, description="the photo is the square the user framed (the app "
                                                          "sends it): the model sees all of it, resized straight "
                                                          "to its input size, instead of the usual centre crop")
                  ) -> Prediction:
    refuse_if_busy(state, request)  # before the upload: no client sends 10 MB to hear "busy"
    budget = Budget(state)
    try:
        with upload_slot(state, request) as slot:
            data = await image_bytes(request, state, budget, slot)
        refuse_if_busy(state, request)  # the upload has arrived: only now does it count as a prediction
        state.in_flight += 1
        try:
            result = await run_in_threadpool(predict_upload, state, data, top_k, gradcam, framed)
        finally:
            state.in_flight -= 1
    finally:
        budget.release()
    state.predictions += 1
    return result


# ---- what the routes do -------------------------------------------------------------------------------

def decode(data: bytes, max_pixels: int, min_size: int | None = None) -> Any:
    from hypoderm.imaging.io import ImageLoadError, load_rgb_bytes

    try:
        return load_rgb_bytes(data, max_pixels=max_pixels, min_size=min_size)
    except ImageLoadError as e:
        status, code = LOAD_ERRORS.get(e.reason, (422, "unreadable_image"))
        raise ApiError(status, code, str(e)) from None


def predict_upload(state: ServerState, data: bytes, top_k: int, gradcam: bool, framed: bool = False
                   ) -> Prediction:
    """Decode and predict one upload, at most `state.limits.max_decodes` at a time (memory = that bound times
    the worst image). Expected failures are ApiErrors (4xx); anything else is a bug and becomes a 500."""
    from hypoderm.imaging.io import ImageShapeError
    from hypoderm.inference import decode_min_size_for

    spec = getattr(state.predictor, "spec", None)
    with state.decode_slots:
        big = False
        try:
            min_size = decode_min_size_for(spec) if spec is not None else None
            img = decode(data, state.limits.max_pixels, min_size)
            width, height = img.info.get(SOURCE_SIZE_KEY, img.size)
            big = width * height >= RELEASE_AFTER_PIXELS
            result = _predict_image(state, img, top_k, gradcam, framed)
        except ImageShapeError as e:
            raise ApiError(422, "bad_aspect_ratio", str(e)) from None
        except MemoryError:
            big = True
            raise ApiError(413, "too_many_pixels", "not enough memory to process this image") from None
        finally:
            if big:
                release_memory()
    if result["status"] == "not_skin":  # refused: no class, so no class probabilities either (issue 29)
        result["probabilities"] = None
    # the photo's own size, not the reduced decode's
    return Prediction(**result, image=ImageSize(width=width, height=height), inference="server")


def _predict_image(state: ServerState, img: Any, top_k: int, gradcam: bool, framed: bool) -> dict[str, Any]:
    """The result dict, with the heat map of the top class over the photo (at most 512 px) when asked
    (hypoderm.inference.explain: the same definition as `predict --cam` and the browser) as a PNG data URL;
    one preprocessing and one model run either way. `framed`: the upload is the square framed in the app
    (the model sees all of it: hypoderm.inference.prepare)."""
    available, reason = state.gradcam_status()
    if not gradcam or not available:
        result = dict(state.predictor.predict_image(img, top_k=top_k, framed=framed))
        if gradcam:
            result["gradcam"] = {"available": False, "reason": reason}
        return result
    result, overlay = state.predictor.predict_with_overlay(img, top_k=top_k, framed=framed)
    result = dict(result)
    if overlay is None:  # drawn only next to an answer (status ok): why not is the status
        result["gradcam"] = {"available": False, "reason": result["status"]}
        return result
    buf = io.BytesIO()
    overlay.save(buf, format="PNG")
    result["gradcam"] = {"available": True, "label": result["top_k"][0]["label"],
                         "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")}
    return result


def _model_info(state: ServerState) -> ModelInfo:
    meta = public_metadata(state.metadata)  # no path of the machine that trained the model, even in an old sidecar
    available, reason = state.gradcam_status()
    ort_version = ort_web_version(state.web_assets)
    delivery = state.get_delivery()
    base = delivery.ort_base
    wasm = delivery.ort.get("ort-wasm-simd-threaded.wasm")
    return ModelInfo(
        format=meta.get("format"),
        model_name=meta.get("model_name"),
        version=meta.get("version"),
        precision=meta.get("precision"),
        class_names=list(meta.get("class_names", [])),
        input=meta.get("input"),
        output=meta.get("output"),
        temperature=meta.get("temperature", 1.0),
        abstain_threshold=meta.get("abstain_threshold"),
        # classes answered only at a higher probability (verdict.answer_threshold; the page applies them too)
        answer_thresholds=meta.get("answer_thresholds") or {},
        ood=with_gate(meta.get("ood")),  # completed, so the browser runs the same gate as predict
        min_source_side=MIN_SOURCE_SIDE,  # a framed square with fewer pixels across is too small to judge
        metrics=meta.get("metrics", {}),
        training_data=meta.get("training_data"),
        # quality checks the model failed at export (`export --force`): the page shows a warning
        quality=meta.get("quality") or {"problems": []},
        disclaimer=meta.get("disclaimer", "Decision aid, not a medical device."),
        model_url=delivery.model_url,
        model_sha256=state.model_sha256,
        model_bytes=state.model_path.stat().st_size,
        # the metadata's Grad-CAM block (output names, layer) lets the page draw the map itself
        gradcam=GradcamInfo(**{**(meta.get("gradcam") or {}), "available": available, "reason": reason}),
        browser_inference=BrowserInference(
            available=state.web_assets is not None,
            runtime=f"onnxruntime-web {ort_version}" if ort_version else None,
            script=f"{base}ort.wasm.min.mjs" if base else None,
            # the page downloads the WASM itself (to show progress) and hands it to onnxruntime-web
            wasm_url=f"{base}ort-wasm-simd-threaded.wasm" if base else None,
            wasm_bytes=wasm.size if wasm else None,
            reason=None if state.web_assets else
            ("onnxruntime-web is not installed on this server "
             "(run scripts/install_web_assets.sh or set HYPODERM_WEB_ASSETS)"),
        ),
        limits=Limits(max_upload_bytes=state.limits.max_upload_bytes, max_pixels=state.limits.max_pixels,
                      max_aspect_ratio=MAX_ASPECT_RATIO, upload_timeout_s=state.limits.body_timeout),
    )
