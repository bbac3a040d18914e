"""The ASGI application of ``lenetish serve``: ``POST /predict``, ``GET /health``, ``GET /``.

Built on FastAPI, whose generated OpenAPI description (``/openapi.json``; browsable at
``/docs`` when ``ServeSettings.api_docs`` is on) lists the bodies ``/predict`` takes and every
answer it gives. Bad requests get a 4xx status and a one-line JSON error
``{"error": ..., "type": ...}``; the server goes on. Every request first passes
:class:`~lenetish.serve.guard.RequestGuard` (Host names, cross-site forms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from torch import Tensor, nn

from lenetish._device import resolve_device
from lenetish.data.identity import DatasetInfo, dataset_for_models
from lenetish.errors import (
    InputShapeError,
    InvalidImageError,
    InvalidInputError,
    LenetishError,
    RequestRejectedError,
)
from lenetish.evaluation import Prediction
from lenetish.evaluation.inference import model_device
from lenetish.serve.batcher import Batcher
from lenetish.serve.bodies import (
    IMAGE_TYPES,
    JSON_TYPE,
    MULTIPART_TYPE,
    image_pixels,
    json_pixels,
    read_body,
)
from lenetish.serve.guard import MAX_HEAD_BYTES, RequestGuard
from lenetish.serve.limits import ClientWatch, DecodeSlots
from lenetish.serve.settings import ServeSettings

__all__ = ["ErrorAnswer", "HealthAnswer", "PixelsBody", "PredictAnswer", "create_app"]

logger = logging.getLogger("lenetish")


class PixelsBody(BaseModel):
    """The JSON body of ``POST /predict``: one 28x28 image, or a list of them."""

    pixels: list[list[float]] | list[list[list[float]]]
    dtype: Literal["uint8", "float32"]


class PredictAnswer(BaseModel):
    """What ``POST /predict`` answers: one entry per image, in the order sent."""

    labels: list[int]
    names: list[str]
    confidence: list[float]
    probabilities: list[list[float]]
    classes: list[str]

    @classmethod
    def of(cls, prediction: Prediction) -> PredictAnswer:
        """The answer holding ``prediction``."""
        return cls(
            labels=prediction.labels.tolist(),
            names=prediction.names,
            confidence=prediction.confidence.tolist(),
            probabilities=prediction.probabilities.tolist(),
            classes=list(prediction.classes or ()),
        )


class HealthAnswer(BaseModel):
    """What ``GET /health`` answers: the model, the limits, and the work done so far."""

    status: Literal["ok"]
    model: str
    weights: str
    dataset: str
    classes: list[str]
    device: str
    threads: int | None
    batching: bool
    max_batch: int
    max_wait_ms: float
    max_upload_bytes: int
    max_image_pixels: int
    max_images: int
    forward_passes: int
    requests: int
    images: int
    largest_batch: int
    waiting: int
    dropped: int


class ErrorAnswer(BaseModel):
    """A refused request: the reason on one line, and the kind of error."""

    error: str
    type: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": description}
    for status, description in {
        400: "malformed body (not JSON, no pixels, no file)",
        403: "a form post without an X-Requested-With header (or this server's Origin)",
        408: "the body did not arrive in time",
        413: "body over the size limit, or too many images",
        415: "a Content-Type other than PNG, JPEG, multipart or JSON",
        421: "a Host header naming none of the server's names",
        422: "not an image, a blank image, wrong pixel shape or values (NaN, range)",
        503: "busy (too many requests or images waiting) or stopping",
    }.items()
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_BODIES: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "one PNG/JPEG image, several as a form, or pixels as JSON",
        "content": {
            JSON_TYPE: {"schema": PixelsBody.model_json_schema()},
            MULTIPART_TYPE: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["file"],
                }
            },
            **{media: _BINARY for media in IMAGE_TYPES},
        },
    }
}


def _status(exc: Exception) -> int:
    if isinstance(exc, RequestRejectedError):
        return exc.status
    if isinstance(exc, (InvalidImageError, InvalidInputError, InputShapeError)):
        return 422
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, RequestValidationError):
        return 422
    return 500


def _error_answer(request: Request, exc: Exception) -> JSONResponse:
    """The one-line JSON error for ``exc`` (the server's own faults are logged, not shown)."""
    status = _status(exc)
    if status >= 500 and not isinstance(exc, RequestRejectedError):
        logger.error("lenetish serve: %s on %s", type(exc).__name__, request.url.path)
        message = f"the server failed ({type(exc).__name__}); its log has the details"
    else:
        detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
        message = " ".join(str(detail).split())
    headers = getattr(exc, "headers", None) if isinstance(exc, HTTPException) else None
    return JSONResponse(
        ErrorAnswer(error=message, type=type(exc).__name__).model_dump(),
        status_code=status,
        headers=headers,
    )


def _page() -> str:
    return (resources.files("lenetish.serve") / "page.html").read_text(encoding="utf-8")


def create_app(
    model: nn.Module | None = None,
    *,
    settings: ServeSettings | None = None,
    dataset: str | DatasetInfo = "auto",
    source: str | None = None,
) -> FastAPI:
    """The prediction service for ``model`` as a FastAPI application.

    Serve the application it returns with any ASGI server (``uvicorn.run(app)``), or with
    ``lenetish serve`` (or :func:`~lenetish.serve.run_server`, which adds the connection
    limits and deadlines of :mod:`lenetish.serve.protocol`). One thread runs the model,
    batching concurrent requests (see ``lenetish.serve.batcher``); it starts with the
    application (its lifespan) and stops, after answering what is queued, when the server
    shuts down. Requests must name the server by one of ``settings.host_names``.

    Args:
        model: the network (default: the shipped ``default`` weights).
        settings: limits and batching (default: :class:`ServeSettings`'s defaults).
        dataset: the dataset the model was trained on (``"auto"``: what its weights file
            recorded, see :func:`~lenetish.predict`).
        source: where the weights came from, as ``/health`` reports it.

    Raises:
        DatasetMismatchError: ``dataset`` contradicts what the model's file recorded.
        DeviceUnavailableError: ``settings.device`` names a device this machine lacks.

    Example:
        >>> from fastapi.testclient import TestClient
        >>> from lenetish.serve import create_app
        >>> pixels = [[0] * 28 for _ in range(28)]
        >>> for row in range(4, 24):
        ...     pixels[row][14] = 255  # a vertical stroke: a one
        >>> with TestClient(create_app(), base_url="http://localhost") as client:
        ...     answer = client.post("/predict", json={"pixels": pixels, "dtype": "uint8"})
        >>> answer.status_code, answer.json()["names"]
        (200, ['1'])
    """
    from lenetish.shipped import pretrained

    settings = settings or ServeSettings()
    if model is None:
        model, source = pretrained("default"), source or "the shipped weights 'default'"
    info = dataset_for_models([model], dataset)
    device = model_device(model) if settings.device is None else resolve_device(settings.device)
    batcher = Batcher(
        model,
        dataset=info,
        batching=settings.batching,
        max_batch=settings.max_batch,
        max_wait=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
        device=settings.device,
        threads=settings.threads,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            decodes.close()
            await run_in_threadpool(batcher.close)

    import lenetish

    app = FastAPI(
        title="lenetish serve",
        version=lenetish.__version__,
        summary=f"Classify {info.name} images with {type(model).__name__}.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load an unpinned script from a CDN into this origin
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
    )
    app.state.settings = settings  # the server reads its connection limits from here
    app.state.decodes = decodes = DecodeSlots(settings.max_decodes)
    for kind in (LenetishError, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, _error_answer)
    app.add_middleware(RequestGuard, names=settings.host_names, max_head_bytes=MAX_HEAD_BYTES)
    page = _page()
    in_progress = 0  # /predict requests being read, prepared or answered (one event loop)

    @app.get("/", response_class=HTMLResponse, summary="a page to draw or upload a digit")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", response_model=HealthAnswer, summary="the model, limits and counts")
    async def health() -> HealthAnswer:
        stats = batcher.stats()
        return HealthAnswer(
            status="ok",
            model=type(model).__name__,
            weights=source or "a model passed to create_app",
            dataset=info.name,
            classes=list(info.classes),
            device=str(device),
            threads=settings.threads,
            batching=settings.batching,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            max_upload_bytes=settings.max_upload_bytes,
            max_image_pixels=settings.max_image_pixels,
            max_images=settings.max_images,
            forward_passes=stats.passes,
            requests=stats.requests,
            images=stats.images,
            largest_batch=stats.largest_batch,
            waiting=stats.waiting,
            dropped=stats.dropped,
        )

    @app.post(
        "/predict",
        response_model=PredictAnswer,
        responses=_ERRORS,
        openapi_extra=_BODIES,
        summary="classify PNG/JPEG images or 28x28 pixel arrays",
    )
    async def predict_route(request: Request) -> PredictAnswer:
        nonlocal in_progress
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in (JSON_TYPE, MULTIPART_TYPE, *IMAGE_TYPES):
            raise RequestRejectedError(
                415,
                f"Content-Type {kind or '(none)'!r} is not taken; send image/png, image/jpeg, "
                "multipart/form-data (field 'file') or application/json",
            )
        if in_progress >= settings.max_requests:
            raise RequestRejectedError(
                503,
                f"the server is busy (requests in progress: {in_progress}, as many as it "
                "takes at once); try again in a moment",
            )
        in_progress += 1
        try:
            with batcher.incoming():  # the model's thread may wait for this one to join
                body = await _body(request, settings)
                watch = ClientWatch(request.receive)  # the body is in: only a disconnect left
                try:
                    pixels = await watch.run(_pixels(request, body, kind, info, settings, decodes))
                except BaseException:
                    watch.close()
                    raise
            try:
                return PredictAnswer.of(await watch.run(batcher.predict(pixels)))
            finally:
                watch.close()
        finally:
            in_progress -= 1

    return app


async def _body(request: Request, settings: ServeSettings) -> bytes:
    """The request's body, read within the size limit and the time limit."""
    try:
        return await asyncio.wait_for(
            read_body(dict(request.headers), request.receive, settings.max_upload_bytes),
            settings.read_timeout_s,
        )
    except asyncio.TimeoutError:
        raise RequestRejectedError(
            408, f"the body did not arrive within {settings.read_timeout_s:g} s"
        ) from None


async def _pixels(
    request: Request,
    body: bytes,
    kind: str,
    info: DatasetInfo,
    settings: ServeSettings,
    decodes: DecodeSlots,
) -> Tensor:
    """The body as checked pixels ``(N, 1, 28, 28)``, decoded in one of the slots."""
    async with decodes.slot():
        if kind == MULTIPART_TYPE:
            files = await _form_files(request, body, settings.max_images)
            return await decodes.run(_files_pixels, files, info, settings)
        if kind == JSON_TYPE:
            return await decodes.run(json_pixels, body, info, settings.max_images)
        return await decodes.run(
            image_pixels, body, "the request body", info, settings.max_image_pixels
        )


async def _form_files(request: Request, body: bytes, max_images: int) -> list[tuple[str, bytes]]:
    """The files of a multipart body, in order, as ``(name, bytes)``."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, stream(), max_files=max_images, max_fields=100)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        too_many = "too many files" in exc.message.lower()
        raise RequestRejectedError(
            413 if too_many else 400,
            f"{exc.message.rstrip('.')}; this server takes at most {max_images} images at once"
            if too_many
            else f"the form cannot be read: {exc.message}",
        ) from None
    files = []
    try:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((value.filename or "an upload", await value.read()))
    finally:
        await form.close()
    if not files:
        raise RequestRejectedError(400, "the form holds no file; send the image as field 'file'")
    return files


def _files_pixels(
    files: list[tuple[str, bytes]], info: DatasetInfo, settings: ServeSettings
) -> Tensor:
    """Each file prepared, in order, as one batch ``(N, 1, 28, 28)``."""
    import torch

    return torch.cat(
        [image_pixels(data, name, info, settings.max_image_pixels) for name, data in files]
    )
