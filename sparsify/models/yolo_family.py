"""The Ultralytics YOLO family: cv-detection and cv-segmentation on YOLO-format data.

Training goes through Ultralytics' own trainer; export, calibration and mAP use the numpy
pre/post-processing of `sparsify.deploy.detection`, the code the deployment runs.
Ultralytics is imported inside functions: it is an optional extra (`sparsify[yolo]`).
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from sparsify.context import RunContext
from sparsify.data.yolo import TASKS
from sparsify.data.yolo_loader import calibration_images, write_ultralytics_dataset, yolo_samples
from sparsify.deploy.detection import (
    MaskCrop,
    box_iou,
    letterbox,
    mask_crops,
    scale_boxes,
    select_detections,
)
from sparsify.deploy.preprocess import load_image
from sparsify.errors import Problem, SparsifyError

log = logging.getLogger("sparsify")

# mAP is measured as Ultralytics' validator does: keep nearly everything, let AP rank it
EVAL_CONF, EVAL_IOU, MAX_DET = 0.001, 0.7, 300
DEPLOY_CONF = 0.25  # what a deployed model reports by default (Ultralytics' predict default)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's 101-point interpolation
EXAMPLE_ARCHS = ("yolov8n", "yolov8n-seg", "yolo11n", "yolo11n-seg", "yolov8s", "yolo11s-seg")
# the DFL conv is a fixed 0..15 "expectation" kernel, not a learned weight: never prune it
PRUNE_IGNORE = [r"re:.*\.dfl\.conv"]


def require_ultralytics() -> Any:
    try:
        import ultralytics
    except ImportError:
        raise SparsifyError(
            "cv-detection and cv-segmentation need Ultralytics: pip install 'sparsify[yolo]'"
        ) from None
    return ultralytics


def _ultra_task(ctx: RunContext) -> str:
    return TASKS[str(ctx.cfg.use_case.task)]


def _summary(ctx: RunContext) -> dict[str, Any]:
    return ctx.outputs["validate"]["data"]


def _arch_yaml(arch: str) -> str:
    return arch if arch.endswith((".yaml", ".yml")) else f"{arch}.yaml"


@cache
def arch_task(arch: str) -> str:
    """The Ultralytics task ('detect', 'segment', ...) of a model YAML name, read offline.

    Raises FileNotFoundError when Ultralytics ships no such YAML.
    """
    require_ultralytics()
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load

    return str(guess_model_task(yaml_model_load(_arch_yaml(arch))))


def add_callbacks(yolo: Any, on_batch_end: Callable[[], None]) -> None:
    """Call `on_batch_end()` after every batch of Ultralytics training, after the optimizer
    step when there is one (where pruning masks get re-applied, a QAT schedule steps)."""
    yolo.add_callback("on_train_batch_end", lambda trainer: on_batch_end())


def _stop_after(yolo: Any, max_steps: int) -> None:
    """Stop Ultralytics training after `max_steps` batches; the epoch still validates/saves."""
    seen = [0]

    def count(trainer: Any) -> None:
        seen[0] += 1
        if seen[0] >= max_steps:
            trainer.stop = True

    yolo.add_callback("on_train_batch_end", count)


@contextmanager
def _torch_state_kept() -> Iterator[None]:
    """Undo what Ultralytics' trainer sets process-wide: on CPU it drops torch to
    cpu_count - 1 threads, and `seed` turns on deterministic algorithms."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _read_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in fp32 eval mode, checkpoint dict) of an Ultralytics checkpoint."""
    require_ultralytics()
    if not path.is_file():
        raise SparsifyError(f"YOLO checkpoint {path} does not exist")
    if path.suffix == ".pt":
        from ultralytics.nn.tasks import load_checkpoint

        model, ckpt = load_checkpoint(str(path), device="cpu")
        return model, ckpt
    # sparsify's own checkpoints (the pipeline names them model.pth); Ultralytics' loader
    # insists on .pt and would try to download anything it cannot find
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    return (ckpt.get("ema") or ckpt["model"]).float().eval(), ckpt


def _names(model: nn.Module) -> list[str]:
    names = getattr(model, "names", None) or {}
    return [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else list(names)


def _head(model: nn.Module) -> nn.Module:
    from ultralytics.nn.modules import Detect

    return next(m for m in model.modules() if isinstance(m, Detect))


def export_onnx(model: nn.Module, path: Path, imgsz: int, opset: int) -> Path:
    """The raw head output (batch, 4 + nc [+ 32], anchors) [+ protos] with BatchNorm folded.

    Done as Ultralytics' exporter prepares a model, on a copy: the caller's (maybe pruned)
    model keeps its BatchNorm layers for later re-estimation.
    """
    require_ultralytics()
    from ultralytics.nn.modules import C2f, Detect, Segment

    model = copy.deepcopy(model).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    head = _head(model)
    if getattr(head, "one2one_cv2", None) is not None:
        head.end2end = False  # NMS-free heads (v10, 26) export their one-to-many branch + our NMS
    model = model.fuse(verbose=False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic, m.xyxy, m.shape = True, "onnx", False, False, None
        elif isinstance(m, C2f):
            m.forward = m.forward_split  # Split instead of chunk: a cleaner graph
    segment = isinstance(head, Segment)
    outputs = ["output0", "output1"] if segment else ["output0"]
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        # one forward caches the anchor grid for this size: it is traced as constants, not
        # as Shape/Range ops
        produced = model(example)
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in ["images", *outputs]},
        )
    shapes = [produced.shape] if isinstance(produced, torch.Tensor) else [t.shape for t in produced]
    _fix_output_dims(path, [list(shape[1:]) for shape in shapes])
    return path


def _fix_output_dims(path: Path, dims: list[list[int]]) -> None:
    """Write the known non-batch output dims: the tracer leaves them symbolic (they come
    from a batch-dependent Reshape), and config.json and quantization read them."""
    import onnx

    graph = onnx.load(str(path))
    for output, known in zip(graph.graph.output, dims, strict=True):
        for dim, value in zip(list(output.type.tensor_type.shape.dim)[1:], known, strict=True):
            dim.Clear()
            dim.dim_value = int(value)
    onnx.save(graph, str(path))


# ---------------------------------------------------------------- mAP (COCO-style)


def match_predictions(
    iou: np.ndarray, pred_cls: np.ndarray, gt_cls: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """(n_pred, 10) true-positive flags at IoU 0.5:0.95, COCO's greedy matching: by score,
    each prediction takes the best-overlapping still-free ground truth of its class."""
    correct = np.zeros((len(pred_cls), len(IOU_THRESHOLDS)), dtype=bool)
    if not len(pred_cls) or not len(gt_cls):
        return correct
    iou = np.where(pred_cls[:, None] == gt_cls[None, :], iou, -1.0)
    taken = np.zeros((len(IOU_THRESHOLDS), len(gt_cls)), dtype=bool)
    rows = np.arange(len(IOU_THRESHOLDS))
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, iou[i][None, :])
        best = candidates.argmax(axis=1)
        hit = candidates[rows, best] >= IOU_THRESHOLDS
        correct[i] = hit
        taken[rows[hit], best[hit]] = True
    return correct


def average_precision(
    correct: np.ndarray, scores: np.ndarray, pred_cls: np.ndarray, gt_cls: np.ndarray
) -> np.ndarray:
    """AP per ground-truth class and IoU threshold (classes, 10), 101-point interpolated."""
    classes = np.unique(gt_cls)
    ap = np.zeros((len(classes), correct.shape[1]))
    order = np.argsort(-scores, kind="stable")
    correct, pred_cls = correct[order], pred_cls[order]
    for k, c in enumerate(classes):
        hits = correct[pred_cls == c].astype(np.float64)
        if not len(hits):
            continue
        tp = hits.cumsum(axis=0)
        fp = (1 - hits).cumsum(axis=0)
        recall = tp / (gt_cls == c).sum()
        precision = np.maximum.accumulate((tp / (tp + fp))[::-1], axis=0)[::-1]  # envelope
        for t in range(correct.shape[1]):
            at = np.searchsorted(recall[:, t], RECALL_POINTS, side="left")
            ap[k, t] = np.where(
                at < len(hits), precision[np.minimum(at, len(hits) - 1), t], 0
            ).mean()
    return ap


def _ground_truth(
    label: Path | None, size: tuple[int, int], segment: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(classes, xyxy boxes in pixels, polygon masks at `size` = (w, h) or None)."""
    width, height = size
    classes, boxes, polygons = [], [], []
    lines = label.read_text(encoding="utf-8-sig").splitlines() if label else []
    for line in lines:
        values = line.split()
        if not values:
            continue
        classes.append(int(values[0]))
        coords = np.asarray(values[1:], dtype=np.float64)
        if segment:
            points = coords.reshape(-1, 2) * (width, height)
            polygons.append([tuple(p) for p in points])
            boxes.append([*points.min(axis=0), *points.max(axis=0)])
        else:
            xc, yc, w, h = coords * (width, height, width, height)
            boxes.append([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])
    masks = None
    if segment:
        masks = np.zeros((len(polygons), height, width), dtype=bool)
        for i, polygon in enumerate(polygons):
            canvas = Image.new("L", (width, height), 0)
            ImageDraw.Draw(canvas).polygon(polygon, fill=1)
            masks[i] = np.asarray(canvas, dtype=bool)
    return (
        np.asarray(classes, dtype=np.int64),
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        masks,
    )


def _mask_iou(crops: list[MaskCrop], gt: np.ndarray) -> np.ndarray:
    """IoU of predicted masks (box windows) with full-size ground-truth masks (m, h, w)."""
    iou = np.zeros((len(crops), len(gt)))
    gt_area = gt.sum(axis=(1, 2))
    for i, ((c0, r0, c1, r1), crop) in enumerate(crops):
        inter = np.logical_and(gt[:, r0:r1, c0:c1], crop).sum(axis=(1, 2))
        iou[i] = inter / np.maximum(crop.sum() + gt_area - inter, 1)
    return iou


def _score_image(
    outputs: list[np.ndarray],
    image: Image.Image,
    letterboxed: tuple[np.ndarray, float, tuple[int, int]],
    label: Path | None,
    nc: int,
    segment: bool,
) -> dict[str, np.ndarray]:
    """One image's predictions matched to its ground truth, by the deployment's functions
    (what `postprocess_detections` composes; masks stay box-sized to bound memory)."""
    size, ratio, pad = letterboxed[0].shape[-1], letterboxed[1], letterboxed[2]
    boxes, scores, pred_cls, coeffs = select_detections(
        outputs[0], EVAL_CONF, EVAL_IOU, MAX_DET, nc
    )
    boxes = scale_boxes(boxes, ratio, pad, image.size)
    gt_cls, gt_boxes, gt_masks = _ground_truth(label, image.size, segment)
    iou = box_iou(boxes, gt_boxes)
    out = {
        "box": match_predictions(iou, pred_cls, gt_cls, scores),
        "scores": scores,
        "pred_cls": pred_cls,
        "gt_cls": gt_cls,
    }
    if segment:
        crops = mask_crops(outputs[1], coeffs, boxes, ratio, pad, image.size, size)
        mask_iou = _mask_iou(crops, gt_masks)  # type: ignore[arg-type]
        out["mask"] = match_predictions(mask_iou, pred_cls, gt_cls, scores)
    return out


def _maps(stats: dict[str, list[np.ndarray]], key: str) -> tuple[float, float]:
    gt = np.concatenate(stats["gt_cls"]) if stats["gt_cls"] else np.zeros(0, np.int64)
    if not len(gt):
        return 0.0, 0.0
    ap = average_precision(
        np.concatenate(stats[key]),
        np.concatenate(stats["scores"]),
        np.concatenate(stats["pred_cls"]),
        gt,
    )
    return 100.0 * float(ap[:, 0].mean()), 100.0 * float(ap.mean())


# ---------------------------------------------------------------- the family


class YoloFamily:
    name = "yolo"
    artifact_name = "model.pt"
    prune_ignore = PRUNE_IGNORE

    def arch_problems(self, arch: str) -> list[Problem]:
        fix = f"use an Ultralytics model YAML name such as {', '.join(EXAMPLE_ARCHS)}"
        try:
            task = arch_task(arch)
        except FileNotFoundError:
            return [Problem("model.arch", arch, "is not a YOLO model Ultralytics knows", fix)]
        if task not in TASKS.values():
            msg = f"is a {task} model; only detect and segment models are supported"
            return [Problem("model.arch", arch, msg, fix)]
        return []

    def resolve_source(self, ctx: RunContext) -> Path | None:
        path = ctx.cfg.model.path
        return Path(str(path)).expanduser().resolve() if path else None

    def checkpoint_problems(
        self, path: Path, ctx: RunContext, data: dict[str, Any]
    ) -> list[Problem]:
        if not path.is_file():
            fix = "point model.path at a .pt file from Ultralytics training, or drop it"
            return [Problem("model.path", str(path), "does not exist", fix)]
        if path.suffix != ".pt":
            fix = "give an Ultralytics checkpoint (.pt), e.g. runs/detect/train/weights/best.pt"
            return [Problem("model.path", str(path), "is not a .pt checkpoint", fix)]
        require_ultralytics()
        from ultralytics import YOLO

        try:
            task = YOLO(str(path)).task
        except Exception as exc:  # noqa: BLE001 - any failure means Ultralytics cannot use it
            fix = "give a checkpoint saved by Ultralytics (YOLO(...).train() or .save())"
            return [
                Problem("model.path", str(path), f"cannot be loaded by Ultralytics: {exc}", fix)
            ]
        wanted = _ultra_task(ctx)
        if task != wanted:
            fix = (
                f"use a {wanted} checkpoint for {ctx.cfg.use_case.name} (e.g. one trained from "
                f"{'yolov8n-seg' if wanted == 'segment' else 'yolov8n'}.yaml), or drop model.path"
            )
            msg = f"is a {task} model, but {ctx.cfg.use_case.name} needs a {wanted} model"
            return [Problem("model.path", str(path), msg, fix)]
        return []

    def needs_baseline(self, ctx: RunContext, source: Path) -> bool:
        """A checkpoint trained on other class names is fine-tuned on this data first."""
        names = _names(_read_checkpoint(source)[0])
        if names == list(_summary(ctx)["classes"]):
            return False
        log.info("%s was trained on other classes (%s): fine-tuning it first", source, names[:5])
        return True

    def train_baseline(
        self, ctx: RunContext, source: Path | None, out_path: Path
    ) -> dict[str, Any]:
        require_ultralytics()
        from ultralytics import YOLO

        arch = str(ctx.cfg.model.arch)
        yolo = YOLO(str(source) if source else _arch_yaml(arch))
        if yolo.task != _ultra_task(ctx):
            raise SparsifyError(
                f"model {source or arch} is a {yolo.task} model but {ctx.cfg.use_case.name} "
                f"needs {_ultra_task(ctx)}: set model.arch (e.g. yolov8n-seg for segmentation)"
            )
        data_yaml = write_ultralytics_dataset(_summary(ctx), ctx.stage_dir("fetch") / "dataset")
        train = ctx.cfg.experiment.train
        if train.max_steps:
            _stop_after(yolo, int(train.max_steps))
        epochs = max(1, math.ceil(float(train.epochs)))
        log.info(
            "Training a dense %s baseline with Ultralytics (%d epochs)", source or arch, epochs
        )
        project = out_path.parent / "ultralytics"
        with _torch_state_kept():
            metrics = yolo.train(
                data=str(data_yaml),
                epochs=epochs,
                imgsz=int(ctx.cfg.data.image_size),
                batch=int(train.batch_size),
                optimizer="AdamW",  # "auto" would ignore lr0 and pick its own learning rate
                lr0=float(train.lr),
                weight_decay=float(train.weight_decay),
                device=str(ctx.cfg.device),
                workers=int(ctx.cfg.data.num_workers),
                plots=False,
                val=True,
                project=str(project),
                name="train",
                exist_ok=True,
                amp=False,
                seed=int(ctx.cfg.seed),
                verbose=False,
            )
        trainer = yolo.trainer
        best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
        shutil.copyfile(best, out_path)
        shutil.rmtree(best.parent, ignore_errors=True)  # results.csv and args.yaml stay
        results = getattr(metrics, "results_dict", {}) or {}
        out: dict[str, Any] = {"epochs": int(trainer.epoch) + 1}
        for suffix, prefix in (("B", ""), ("M", "mask_")):
            for name in ("mAP50", "mAP50-95"):
                value = results.get(f"metrics/{name}({suffix})")
                if value is not None:
                    out[f"{prefix}{name.lower()}"] = round(100.0 * float(value), 4)
        log.info("Dense baseline on val (Ultralytics' validator): %s", out)
        return out

    def load(self, path: Path, ctx: RunContext) -> nn.Module:
        return _read_checkpoint(Path(path))[0].float().eval()

    def save(self, model: nn.Module, path: Path, ctx: RunContext) -> None:
        """An Ultralytics-format checkpoint (fp32): `YOLO(path)` and `load` both read it."""
        ultralytics = require_ultralytics()
        args = getattr(model, "args", {}) or {}
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "date": datetime.now().isoformat(),
                "version": ultralytics.__version__,
                "epoch": -1,
                "best_fitness": None,
                "model": model,
                "ema": None,
                "updates": None,
                "optimizer": None,
                "train_args": dict(args) if isinstance(args, dict) else dict(vars(args)),
            },
            str(path),
        )

    def export(self, model: nn.Module, path: Path, ctx: RunContext) -> Path:
        return export_onnx(model, path, int(ctx.cfg.data.image_size), int(ctx.cfg.export.opset))

    def calibration_feeds(self, ctx: RunContext, n: int) -> list[dict[str, np.ndarray]]:
        size = int(ctx.cfg.data.image_size)
        images = calibration_images(_summary(ctx), n, int(ctx.cfg.seed))
        return [{"images": letterbox(load_image(p), size)[0][None]} for p in images]

    def evaluate_onnx(self, engine: Any, ctx: RunContext) -> dict[str, float]:
        summary = _summary(ctx)
        segment = _ultra_task(ctx) == "segment"
        samples = yolo_samples(summary, "val")
        if ctx.cfg.data.max_eval_samples:
            samples = samples[: int(ctx.cfg.data.max_eval_samples)]
        size, nc = int(ctx.cfg.data.image_size), len(summary["classes"])
        batch = max(1, int(ctx.cfg.data.batch_size))
        stats: dict[str, list[np.ndarray]] = {
            k: [] for k in ("box", "mask", "scores", "pred_cls", "gt_cls")
        }
        for start in range(0, len(samples), batch):
            chunk = samples[start : start + batch]
            images = [load_image(p) for p, _ in chunk]
            boxed = [letterbox(image, size) for image in images]
            outputs = engine.run({"images": np.stack([b[0] for b in boxed])})
            for j, ((_, label), image) in enumerate(zip(chunk, images, strict=True)):
                mine = [o[j] for o in outputs]
                for key, value in _score_image(mine, image, boxed[j], label, nc, segment).items():
                    stats[key].append(value)
        map50, map50_95 = _maps(stats, "box")
        result: dict[str, float] = {"map50-95": map50_95, "map50": map50}
        if segment:
            result["mask_map50"], result["mask_map50-95"] = _maps(stats, "mask")
        result["samples"] = len(samples)
        return result

    def deployment_files(self, ctx: RunContext, out_dir: Path) -> dict[str, Any]:
        classes = [str(c) for c in _summary(ctx)["classes"]]
        (out_dir / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        segment = _ultra_task(ctx) == "segment"
        return {
            "preprocessing": {
                "type": "letterbox",
                "image_size": int(ctx.cfg.data.image_size),
                "pad_value": 114,
                "scale": 1 / 255,
                "channels": "RGB",
                "layout": "NCHW",
            },
            "postprocessing": {
                "type": "yolo_nms",
                "conf_threshold": DEPLOY_CONF,
                "iou_threshold": EVAL_IOU,
                "max_detections": MAX_DET,
                "num_classes": len(classes),
                "box_format": "xyxy",
                "masks": segment,
            },
            "labels": classes,
            "labels_file": "labels.txt",
        }
