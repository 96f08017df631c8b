"""Checking and decoding what users send a Pipeline: images and texts.

Every bad input raises `InputError` (a SparsifyError) naming what was wrong, so the HTTP
server can answer 4xx instead of failing.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sparsify.deploy.preprocess import to_rgb
from sparsify.errors import SparsifyError

MAX_PIXELS = 40_000_000  # decoded image size limit (width * height); ~120 MB as RGB
_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


class InputError(SparsifyError):
    """An input the Pipeline cannot use (wrong type, undecodable image, empty text)."""


class ImageTooLarge(InputError):
    """An image over a decoded-pixel limit (the HTTP server answers 413)."""


def _checked_size(image: Image.Image, max_pixels: int) -> Image.Image:
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    return image


def _open(source: Any, max_pixels: int) -> Image.Image:
    """Open (lazily), check the size before decoding, then decode and convert to RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                _checked_size(opened, max_pixels)
                opened.load()
                return to_rgb(opened)  # 16-bit scaled as in training
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"image file {source} does not exist") from None
    except Exception as exc:  # noqa: BLE001
        # untrusted bytes: PIL and the openers plugins register (e.g. HEIF via Ultralytics)
        # fail in many ways (OSError, ValueError, SyntaxError, ImportError, ...); each one
        # means the same to the caller
        raise InputError(f"cannot decode the image: {type(exc).__name__}: {exc}") from None


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes, read from the header: nothing is decoded."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return opened.size
    except Image.DecompressionBombError as exc:  # over 2x PIL.Image.MAX_IMAGE_PIXELS
        raise ImageTooLarge(f"image is too large to decode: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes, as in _open
        raise InputError(f"cannot decode the image: {type(exc).__name__}: {exc}") from None


def load_image(
    source: str | Path | Image.Image | np.ndarray | bytes, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """An RGB PIL image from a path, encoded bytes, a PIL image, or an HWC (or HW) array."""
    if isinstance(source, Image.Image):
        return to_rgb(_checked_size(source, max_pixels))
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, bytes | bytearray | memoryview):
        return _open(io.BytesIO(bytes(source)), max_pixels)
    if isinstance(source, str | Path):
        return _open(Path(source), max_pixels)
    raise InputError(
        f"an image must be a path, bytes, a PIL image or an HWC uint8 array, "
        f"not {type(source).__name__}"
    )


def _from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise InputError(
            f"an image array must be HWC with 1, 3 or 4 channels (or HW), got {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError(f"an image array must be numeric, got dtype {array.dtype}")
    if array.dtype != np.uint8:
        array = np.clip(np.nan_to_num(array.astype(np.float64)), 0, 255).astype(np.uint8)
    image = _checked_size(Image.fromarray(np.ascontiguousarray(array)), max_pixels)
    return image.convert("RGB")


def decode_base64(text: str) -> bytes:
    """The encoded image bytes of base64 text (optionally a `data:image/...;base64,` URL)."""
    payload = _DATA_URL.sub("", text.strip(), count=1)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("image is not valid base64") from None
    if not data:
        raise InputError("image is empty")
    return data


def check_text(value: Any, what: str = "text") -> str:
    """A non-empty string that encodes to UTF-8 (no lone surrogates)."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InputError(f"{what} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} is not valid Unicode (lone surrogate characters)") from None
    return value
