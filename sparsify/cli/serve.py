"""`sparsify serve DEPLOYMENT_DIR --port N`: a deployment folder over HTTP (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from sparsify.errors import SparsifyError

log = logging.getLogger("sparsify")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def parser() -> argparse.ArgumentParser:
    from sparsify.deploy.inputs import MAX_PIXELS
    from sparsify.deploy.server import MAX_BATCH, MAX_BODY_MB, MAX_REQUEST_PIXELS

    p = argparse.ArgumentParser(
        prog="sparsify serve",
        description="Serve a deployment folder over HTTP: POST /predict, GET /health, GET /info.",
    )
    p.add_argument("deployment_dir", type=Path, help="the deployment/ folder of a run")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--engine", default="onnxruntime", help="onnxruntime (default), openvino or deepsparse"
    )
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: all)")
    p.add_argument(
        "--max-body-mb",
        type=_positive_float,
        default=MAX_BODY_MB,
        help=f"largest request body in MiB (default {MAX_BODY_MB:g})",
    )
    p.add_argument(
        "--max-batch",
        type=_positive_int,
        default=MAX_BATCH,
        help=f"inputs per request (default {MAX_BATCH})",
    )
    p.add_argument(
        "--max-pixels-per-image",
        type=_positive_int,
        default=MAX_PIXELS,
        help=f"largest image, width x height, checked before decoding (default {MAX_PIXELS:_})",
    )
    p.add_argument(
        "--max-pixels-per-request",
        type=_positive_int,
        default=MAX_REQUEST_PIXELS,
        help="pixels of all the images of one request together, checked before decoding "
        f"(default {MAX_REQUEST_PIXELS:_}); bounds the memory a request can take",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _load(args: argparse.Namespace) -> Any:
    """The Pipeline of the deployment; a damaged model file is one error saying what to do."""
    from sparsify.deploy import Pipeline
    from sparsify.deploy.pipeline import read_config

    try:
        return Pipeline(
            args.deployment_dir,
            engine=args.engine,
            num_threads=args.threads,
            max_pixels=args.max_pixels_per_image,
        )
    except SparsifyError:
        raise
    except Exception as exc:
        # ONNX Runtime's InvalidProtobuf / Fail / InvalidGraph for a truncated or foreign file
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        model = Path(args.deployment_dir) / str(read_config(args.deployment_dir)["model"])
        text = str(exc).strip()
        reason = text.splitlines()[0].rstrip(".") if text else type(exc).__name__
        raise SparsifyError(
            f"cannot load the model {model}: it is damaged (truncated by an interrupted copy, "
            f"or not an ONNX model); ONNX Runtime says: {reason}. Re-run the package stage of "
            "the run that built it (sparsify run_dir=RUN_DIR stages=[package]), or copy the "
            "deployment folder again"
        ) from None


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from sparsify.deploy.server import create_app, require_fastapi

    require_fastapi()  # before loading the model: a missing extra is the first thing to say
    import uvicorn
    from PIL import Image

    if not args.deployment_dir.is_dir():
        raise SparsifyError(f"{args.deployment_dir} is not a folder; give a run's deployment/")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(message)s")
    pipeline = _load(args)
    app = create_app(
        pipeline,
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_batch=args.max_batch,
        max_pixels_per_image=args.max_pixels_per_image,
        max_pixels_per_request=args.max_pixels_per_request,
    )
    # PIL's own decompression-bomb guard follows the per-image limit, so no decoder path in
    # PIL or its plugins can go past it; process-wide, set only once this process just serves
    Image.MAX_IMAGE_PIXELS = args.max_pixels_per_image
    log.info(
        "Serving %s (%s) on http://%s:%d", args.deployment_dir, pipeline.task, args.host, args.port
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
