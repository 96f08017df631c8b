"""Requests to `sparsify serve` (FastAPI's TestClient on the tiny deployment, with small
limits so the cases stay small): each gets a 4xx whose detail names the field, the limit
or the option at fault; never a 5xx or a traceback."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

MAX_BATCH = 4
MAX_BODY = 256 * 1024
PER_IMAGE = 1_000_000
PER_REQUEST = 1_500_000


@dataclass(frozen=True)
class ServerCase:
    id: str
    send: Callable[[Any], Any]  # TestClient -> response
    status: int
    names: tuple[str, ...]


def png(size: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` in its header and holds no pixel data (a bomb
    that must be refused from the header, before any decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)  # the first rows' worth; a decoder would want far more
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


SMALL = b64(png())


def post_json(body: Any) -> Callable[[Any], Any]:
    return lambda client: client.post("/predict", json=body)


def post_raw(data: bytes, content_type: str, **headers: str) -> Callable[[Any], Any]:
    return lambda client: client.post(
        "/predict", content=data, headers={"content-type": content_type, **headers}
    )


def post_files(
    files: list[tuple[str, tuple[str, bytes, str]]], data: dict[str, str] | None = None
) -> Callable[[Any], Any]:
    return lambda client: client.post("/predict", files=files, data=data or {})


CASES: list[ServerCase] = [
    ServerCase("bad-json", post_raw(b'{"inputs": [', "application/json"), 422, ("json",)),
    ServerCase("not-json-at-all", post_raw(b"hello", "application/json"), 422, ("json",)),
    ServerCase("wrong-content-type", post_raw(b"inputs=x", "text/plain"), 415, ("text/plain",)),
    ServerCase("xml", post_raw(b"<inputs/>", "application/xml"), 415, ("application/xml",)),
    ServerCase("no-inputs", post_json({}), 422, ("inputs",)),
    ServerCase("inputs-number", post_json({"inputs": 5}), 422, ("inputs",)),
    ServerCase("inputs-null", post_json({"inputs": None}), 422, ("inputs",)),
    ServerCase("inputs-ints", post_json({"inputs": [1, 2]}), 422, ("inputs",)),
    ServerCase("unknown-field", post_json({"inputs": SMALL, "topk": 3}), 422, ("topk",)),
    ServerCase("top-k-zero", post_json({"inputs": SMALL, "top_k": 0}), 422, ("top_k",)),
    ServerCase("top-k-string", post_json({"inputs": SMALL, "top_k": "3"}), 422, ("top_k",)),
    ServerCase("empty-list", post_json({"inputs": []}), 422, ("inputs",)),
    ServerCase("empty-string", post_json({"inputs": ""}), 422, ("inputs",)),
    ServerCase(
        "too-many-inputs",
        post_json({"inputs": [SMALL] * (MAX_BATCH + 1)}),
        413,
        ("--max-batch", str(MAX_BATCH)),
    ),
    ServerCase("not-base64", post_json({"inputs": ["@@not base64@@"]}), 400, ("inputs[0]",)),
    ServerCase(
        "non-image-bytes",
        post_json({"inputs": [SMALL, b64(b"GIF89a but not really")]}),
        400,
        ("inputs[1]",),
    ),
    ServerCase("text-bytes", post_json({"inputs": b64(b"just some text")}), 400, ("inputs[0]",)),
    ServerCase("truncated-png", post_json({"inputs": [b64(png()[:40])]}), 400, ("inputs[0]",)),
    ServerCase(
        "huge-image",
        post_json({"inputs": [b64(png((1001, 1000)))]}),
        413,
        ("inputs[0]", "--max-pixels-per-image"),
    ),
    ServerCase(
        "header-bomb",
        post_json({"inputs": [b64(png_header(100_000, 100_000))]}),
        413,
        ("inputs[0]", "--max-pixels-per-image"),
    ),
    ServerCase(
        "zero-pixel-header", post_json({"inputs": [b64(png_header(0, 16))]}), 400, ("inputs[0]",)
    ),
    ServerCase(
        "request-pixel-budget",
        post_json({"inputs": [b64(png((1000, 1000)))] * 2}),
        413,
        ("--max-pixels-per-request",),
    ),
    ServerCase(
        "body-over-limit", post_json({"inputs": "A" * (MAX_BODY + 1)}), 413, ("--max-body-mb",)
    ),
    ServerCase(
        "bad-content-length",
        post_raw(b"{}", "application/json", **{"content-length": "abc"}),
        400,
        ("Content-Length",),
    ),
    ServerCase(
        "multipart-no-file", post_files([("top_k", (None, b"1", "text/plain"))]), 400, ("file",)
    ),
    ServerCase(
        "multipart-text-file",
        post_files([("file", ("notes.txt", b"hello", "text/plain"))]),
        400,
        ("notes.txt",),
    ),
    ServerCase(
        "multipart-bad-top-k",
        post_files([("file", ("a.png", png(), "image/png"))], {"top_k": "lots"}),
        422,
        ("top_k",),
    ),
    ServerCase(
        "multipart-too-many",
        post_files([("file", (f"{i}.png", png(), "image/png")) for i in range(MAX_BATCH + 1)]),
        413,
        ("--max-batch",),
    ),
    ServerCase("get-predict", lambda client: client.get("/predict"), 405, ("Method Not Allowed",)),
]
