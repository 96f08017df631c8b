"""The HTTP server of a deployment folder (FastAPI): /predict, /health, /info.

Bad requests get a 4xx with a message: malformed JSON or wrong field types 422, an
undecodable image or an unusable input 400, a body, input count or image pixels over the
limits 413, an unsupported content type 415. Inference runs in the worker thread pool, so
requests are served concurrently (ONNX Runtime's `run` is thread-safe; tokenization is
serialized).

Memory: a small PNG can decode to hundreds of MB, so every image's size is read from its
header and checked against a per-image and a per-request pixel budget before anything is
decoded; the pipeline then decodes one image at a time, and after a large request the freed
buffers are handed back to the OS (glibc keeps them in per-thread arenas otherwise).
"""

# no `from __future__ import annotations`: FastAPI reads the route annotations at run time,
# and `Request` is imported inside create_app (FastAPI is an optional extra)
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from sparsify.deploy.inputs import MAX_PIXELS, ImageTooLarge, InputError, decode_base64, image_size
from sparsify.deploy.pipeline import IMAGE_TASKS, Pipeline
from sparsify.deploy.requests import FORM_OPTIONS, REQUESTS, options_of, pipeline_inputs
from sparsify.deploy.results import to_jsonable
from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")

MAX_BODY_MB = 16.0
MAX_BATCH = 64  # inputs per request
# decoded pixels of all the images of one request (~400 MB as PIL holds RGB), e.g. 48
# Full-HD images, or 2 of the largest (MAX_PIXELS) ones
MAX_REQUEST_PIXELS = 100_000_000
TRIM_AFTER_PIXELS = 4_000_000  # requests decoding at least this many pixels release memory


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


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Hand freed heap pages back to the OS.

    PIL decodes into 16 MB blocks; once one is freed glibc serves the next ones from its
    per-thread arenas and keeps them when they are freed, so without this a burst of large
    images leaves the server gigabytes bigger for good.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class PixelBudget:
    """Decoded-pixel limits per image and per request, checked from the image headers."""

    def __init__(self, per_image: int, per_request: int) -> None:
        self.per_image = per_image
        self.per_request = per_request

    def check(self, images: list[tuple[str, bytes]]) -> int:
        """The pixels of `images` ((name in messages, encoded bytes)); none is decoded.

        Over a limit raises ImageTooLarge (413) saying the limit and the option raising it.
        """
        total = 0
        for what, data in images:
            try:
                width, height = image_size(data)
            except ImageTooLarge:  # PIL refused its header: far past any limit set here
                raise ImageTooLarge(
                    f"{what}: image is too large to open (its header claims more pixels "
                    f"than PIL opens); the limit is {self.per_image:,} pixels per image: send a smaller "
                    "image, or start the server with a higher `sparsify serve "
                    "--max-pixels-per-image`"
                ) from None
            except InputError as exc:
                raise type(exc)(f"{what}: {exc}") from None
            if width < 1 or height < 1:
                raise InputError(f"{what}: image has no pixels ({width}x{height})")
            if width * height > self.per_image:
                raise ImageTooLarge(
                    f"{what}: image is {width}x{height} = {width * height:,} pixels; the limit "
                    f"is {self.per_image:,} pixels per image: send a smaller image, or start "
                    "the server with a higher `sparsify serve --max-pixels-per-image`"
                )
            total += width * height
        if total > self.per_request:
            raise ImageTooLarge(
                f"the {len(images)} images of this request have {total:,} pixels in all; the "
                f"limit is {self.per_request:,} pixels per request: send fewer or smaller "
                "images per request, or start the server with a higher "
                "`sparsify serve --max-pixels-per-request`"
            )
        return total


def create_app(
    pipeline: Pipeline,
    max_body_bytes: int = int(MAX_BODY_MB * 2**20),
    max_batch: int = MAX_BATCH,
    max_pixels_per_image: int = MAX_PIXELS,
    max_pixels_per_request: int = MAX_REQUEST_PIXELS,
) -> Any:
    """A FastAPI app serving `pipeline` (whose own `max_pixels` also applies when decoding)."""
    fastapi = require_fastapi()
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from pydantic import ValidationError
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    task = pipeline.task
    request_model, form_model = REQUESTS[task], FORM_OPTIONS.get(task)
    budget = PixelBudget(max_pixels_per_image, max_pixels_per_request)
    app = fastapi.FastAPI(
        title=f"sparsify: {pipeline.config.get('use_case', task)}",
        # the folder's name only: the schema is public, the server's file layout is not
        description=f"{task} model from the deployment folder {pipeline.dir.resolve().name!r}",
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
            "max_pixels_per_image": max_pixels_per_image,
            "max_pixels_per_request": max_pixels_per_request,
        }

    async def from_json(body: bytes) -> tuple[list[Any], dict[str, Any]]:
        """(inputs, options); images as (name in messages, encoded bytes)."""
        parsed = request_model.model_validate_json(body)
        inputs = pipeline_inputs(parsed.inputs)  # type: ignore[attr-defined]
        batch = inputs if isinstance(inputs, list) else [inputs]
        if task in IMAGE_TASKS:
            names = [f"inputs[{i}]" for i in range(len(batch))]
            batch = await run_in_threadpool(
                lambda: [(n, _base64(n, text)) for n, text in zip(names, batch, strict=True)]
            )
        return batch, options_of(parsed)

    async def from_form(request: Request) -> tuple[list[Any], dict[str, Any]]:
        if form_model is None:
            raise InputError(f'{task} takes a JSON body: {{"inputs": ...}}')
        form = await request.form()
        uploads, fields = [], {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
            else:
                uploads.append((f"file {value.filename or key!r}", await value.read()))
        if not uploads:
            raise InputError("multipart request without an image file (e.g. -F file=@img.jpg)")
        return uploads, options_of(form_model.model_validate(fields, strict=False))

    async def run(batch: list[Any], options: dict[str, Any]) -> Any:
        pixels = 0
        if task in IMAGE_TASKS:
            pixels = await run_in_threadpool(budget.check, batch)  # before any decoding
            batch = [data for _, data in batch]
        try:
            return await run_in_threadpool(pipeline, batch, **options)
        finally:
            if pixels >= TRIM_AFTER_PIXELS:
                await run_in_threadpool(release_memory)

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if kind == "multipart/form-data":
                batch, options = await from_form(request)
            elif kind in ("application/json", ""):
                batch, options = await from_json(await request.body())
            else:
                return error(415, f"content type {kind!r}: send application/json or multipart")
            if len(batch) > max_batch:
                return error(
                    413,
                    f"{len(batch)} inputs in one request; the limit is {max_batch}: split the "
                    "request, or start the server with a higher `sparsify serve --max-batch`",
                )
            if not batch:
                return error(422, "inputs is an empty list")
            results = await run(batch, options)
        except ValidationError as exc:
            return error(422, _validation_detail(exc))
        except ImageTooLarge as exc:
            return error(413, str(exc))
        except InputError as exc:
            return error(400, str(exc))
        except HTTPException as exc:  # e.g. a malformed multipart body
            return error(exc.status_code, exc.detail)
        except ClientDisconnect:
            # nobody is left to answer; uvicorn would log a traceback for an unhandled one
            log.info("A client disconnected before sending all of its /predict request")
            return error(400, "client disconnected")
        return {"task": task, "predictions": to_jsonable(results)}

    return app


def _base64(what: str, text: str) -> bytes:
    try:
        return decode_base64(text)
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None
