"""The HTTP server of a deployment folder (FastAPI): /predict, /health, /info.

Bad requests get a 4xx with a message: malformed JSON or wrong field types 422, an
undecodable image or an unusable input 400, a body over the limit 413, an unsupported
content type 415. Inference runs in the worker thread pool, so requests are served
concurrently (ONNX Runtime's `run` is thread-safe; tokenization is serialized).
"""

# no `from __future__ import annotations`: FastAPI reads the route annotations at run time,
# and `Request` is imported inside create_app (FastAPI is an optional extra)
import logging
from typing import Any

from sparsify.deploy.inputs import MAX_PIXELS, InputError, decode_base64_image, load_image
from sparsify.deploy.pipeline import IMAGE_TASKS, Pipeline
from sparsify.deploy.requests import FORM_OPTIONS, REQUESTS, options_of, pipeline_inputs
from sparsify.deploy.results import to_jsonable
from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

MAX_BODY_MB = 16.0
MAX_BATCH = 64  # inputs per request


def require_fastapi() -> Any:
    try:
        import fastapi
        import python_multipart  # noqa: F401 - for image uploads
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise SparsifyError(
            f"`sparsify serve` needs FastAPI, uvicorn and python-multipart ({exc.name} is "
            "missing): pip install 'sparsify[serve]'"
        ) from None
    return fastapi


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse bodies over `max_bytes` (by Content-Length, or while reading)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send, 413 if length.isdigit() else 400)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send, 413)

    async def _refuse(self, send: Any, status: int) -> None:
        from starlette.responses import JSONResponse

        detail = (
            f"request body is over the limit of {self.max_bytes} bytes (--max-body-mb)"
            if status == 413
            else "invalid Content-Length header"
        )
        response = JSONResponse({"detail": detail}, status_code=status)
        await response({"type": "http"}, None, send)  # type: ignore[arg-type]


def _validation_detail(exc: Any) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def create_app(
    pipeline: Pipeline,
    max_body_bytes: int = int(MAX_BODY_MB * 2**20),
    max_batch: int = MAX_BATCH,
    max_pixels: int = MAX_PIXELS,
) -> Any:
    """A FastAPI app serving `pipeline`."""
    fastapi = require_fastapi()
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from pydantic import ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    task = pipeline.task
    request_model, form_model = REQUESTS[task], FORM_OPTIONS.get(task)
    app = fastapi.FastAPI(
        title=f"sparsify: {pipeline.config.get('use_case', task)}",
        description=f"{task} model from {pipeline.dir}",
        version=str(pipeline.config.get("sparsify_version", "")),
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    def error(status: int, detail: Any) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "task": task}

    @app.get("/info")
    def info() -> dict[str, Any]:
        config = pipeline.config
        return {
            "task": task,
            "use_case": config.get("use_case"),
            "engine": pipeline.engine_name,
            "labels": pipeline.labels,
            "inputs": config.get("inputs"),
            "outputs": config.get("outputs"),
            "preprocessing": config.get("preprocessing"),
            "postprocessing": config.get("postprocessing"),
            "sparsity": config.get("sparsity"),
            "quantized": config.get("quantized"),
            "optim_level": config.get("optim_level"),
            "options": pipeline.options,
            "request_schema": request_model.model_json_schema(),
            "multipart": task in IMAGE_TASKS,
            "max_body_bytes": max_body_bytes,
            "max_batch": max_batch,
        }

    async def from_json(body: bytes) -> tuple[Any, dict[str, Any]]:
        parsed = request_model.model_validate_json(body)
        inputs = pipeline_inputs(parsed.inputs)  # type: ignore[attr-defined]
        if task in IMAGE_TASKS:
            items = inputs if isinstance(inputs, list) else [inputs]
            images = await run_in_threadpool(
                lambda: [_decode(i, s, max_pixels) for i, s in enumerate(items)]
            )
            inputs = images if isinstance(inputs, list) else images[0]
        return inputs, options_of(parsed)

    async def from_form(request: Request) -> tuple[Any, dict[str, Any]]:
        if form_model is None:
            raise InputError(f'{task} takes a JSON body: {{"inputs": ...}}')
        form = await request.form()
        uploads, fields = [], {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
            else:
                uploads.append((value.filename or key, await value.read()))
        if not uploads:
            raise InputError("multipart request without an image file (e.g. -F file=@img.jpg)")
        options = options_of(form_model.model_validate(fields, strict=False))
        images = await run_in_threadpool(
            lambda: [_load(name, data, max_pixels) for name, data in uploads]
        )
        return images, options

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if kind == "multipart/form-data":
                inputs, options = await from_form(request)
            elif kind in ("application/json", ""):
                inputs, options = await from_json(await request.body())
            else:
                return error(415, f"content type {kind!r}: send application/json or multipart")
            batch = inputs if isinstance(inputs, list) else [inputs]
            if len(batch) > max_batch:
                return error(413, f"{len(batch)} inputs in one request; the limit is {max_batch}")
            if not batch:
                return error(422, "inputs is an empty list")
            results = await run_in_threadpool(pipeline, batch, **options)
        except ValidationError as exc:
            return error(422, _validation_detail(exc))
        except InputError as exc:
            return error(400, str(exc))
        except HTTPException as exc:  # e.g. a malformed multipart body
            return error(exc.status_code, exc.detail)
        return {"task": task, "predictions": to_jsonable(results)}

    return app


def _decode(index: int, text: str, max_pixels: int) -> Any:
    try:
        return decode_base64_image(text, max_pixels)
    except InputError as exc:
        raise InputError(f"inputs[{index}]: {exc}") from None


def _load(name: str, data: bytes, max_pixels: int) -> Any:
    try:
        return load_image(data, max_pixels)
    except InputError as exc:
        raise InputError(f"file {name!r}: {exc}") from None
