"""The Ultralytics YOLO family: cv-detection and cv-segmentation on YOLO-format data.

Training and the baseline's validation go through Ultralytics' own trainer and validator
(`yolo_training`); export, calibration and mAP use the numpy pre/post-processing of
`sparsify.deploy.detection`, the code the deployment runs (`yolo_metrics`).
Ultralytics is imported inside functions: it is an optional extra (`sparsify[yolo]`).
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from sparsify.context import RunContext
from sparsify.data.yolo import TASKS
from sparsify.data.yolo_loader import calibration_images, write_ultralytics_dataset
from sparsify.deploy.detection import letterbox
from sparsify.deploy.preprocess import load_image
from sparsify.errors import Problem, SparsifyError
from sparsify.models.base import ModelFamily
from sparsify.models.safe_load import UnsafePickleError, trusted, unsafe_problem
from sparsify.models.tensorboard import EventLog
from sparsify.models.yolo.metrics import EVAL_IOU, MAX_DET, evaluate_yolo
from sparsify.models.yolo.model import (
    arch_task,
    arch_yaml,
    class_names,
    export_onnx,
    load_yolo,
    read_checkpoint,
    require_ultralytics,
    save_checkpoint,
)
from sparsify.models.yolo.training import (
    BatchHook,
    add_callbacks,
    copy_zeros,
    hold_masks,
    last_model,
    run_training,
    trainer_metrics,
    zero_masks,
)
from sparsify.outputs import ValidateOutput
from sparsify.recipes.modifiers import ConstantPruningModifier

log = logging.getLogger("sparsify")

DEPLOY_CONF = 0.25  # what a deployed model reports by default (Ultralytics' predict default)
EXAMPLE_ARCHS = ("yolov8n", "yolov8n-seg", "yolo11n", "yolo11n-seg", "yolov8s", "yolo11s-seg")
# Never pruned: the DFL conv (a fixed 0..15 "expectation" kernel, not a learned weight), the
# stem conv (3 input channels: each weight sees a whole colour plane) and the head's output
# convs (cv2 boxes, cv3 classes, cv4 mask coefficients; each the last of its Sequential, the
# `.conv` of a C2f's cv2 never matches), as SparseML's YOLO recipes leave them. They hold
# < 1 % of the weights and FLOPs.
PRUNE_IGNORE = [r"re:.*\.dfl\.conv", r"re:model\.0\.conv", r"re:.*\.cv[234]\.\d+\.2"]
__all__ = ["YoloFamily", "add_callbacks", "arch_task", "hold_masks", "zero_masks"]


def _ultra_task(ctx: RunContext) -> str:
    return TASKS[str(ctx.cfg.use_case.task)]


def _summary(ctx: RunContext) -> dict[str, Any]:
    return ctx.output(ValidateOutput).summary


def _keep_results(out_dir: Path, target: Path) -> None:
    """Ultralytics' per-epoch losses and mAP (results.csv) outlive its run folder."""
    found = sorted(out_dir.rglob("results.csv"))
    if found:
        shutil.copyfile(found[-1], target)


def head_decode_nodes(model: Any) -> list[str]:
    """Names of the ONNX nodes of the detection head's decode: everything in the Detect /
    Segment module (found by its DFL) outside its conv branches (cv2/cv3/cv4) and the mask
    prototype net: reshapes, DFL softmax and expectation, box arithmetic, class sigmoid and the
    output Concats. INT8 keeps them float, so boxes and scores are never rounded to 8 bits."""
    nodes = model.graph.node  # an onnx.ModelProto
    heads = {n.name.split("/dfl/")[0] + "/" for n in nodes if "/dfl/" in n.name}
    branches = tuple(f"{h}{b}" for h in heads for b in ("cv2", "cv3", "cv4", "proto"))
    return [
        n.name
        for n in nodes
        if any(n.name.startswith(h) for h in heads) and not n.name.startswith(branches)
    ]


class YoloFamily(ModelFamily):
    checkpoint_name = "model.pt"  # what the sparsify stage saves: Ultralytics loads only .pt
    name = "yolo"
    artifact_name = "model.pt"
    prune_ignore = tuple(PRUNE_IGNORE)
    # quantization.format=qdq (ONNX Runtime) also quantizes the ops between convolutions (SiLU
    # = Sigmoid * x, C2f's Split / Concat, SPPF's MaxPool, the neck's Resize and Adds), so
    # tensors stay INT8 from conv to conv. YOLOv8s on generated shapes, 160 px, batch 16,
    # 2 cores with VNNI, GPTQ off: 1.94x -> 2.61x dense ORT, mAP50-95 97.12 -> 97.40 (dense
    # 97.66). Not for qoperator: DeepSparse 1.8 then supports 44 % of YOLOv8n's ops (99.8 %
    # with Conv only) and runs 2x slower.
    extra_int8_ops = {"qdq": ("Add", "Mul", "Sigmoid", "Concat", "MaxPool", "Resize", "Split")}

    def int8_float_nodes(self, model: Any, fmt: str) -> list[str]:
        """ONNX nodes every INT8 format leaves float (`head_decode_nodes`)."""
        return head_decode_nodes(model)

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
        try:
            # weights-only with the YOLO allow-list: never Ultralytics' full unpickling here
            task = read_checkpoint(path, trusted(ctx))[0].task
        except Exception as exc:  # noqa: BLE001 - any failure means Ultralytics cannot use it
            if isinstance(exc, UnsafePickleError):
                return [unsafe_problem(path, exc.names)]
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
        names = class_names(read_checkpoint(source, trusted(ctx))[0])
        if names == list(_summary(ctx)["classes"]):
            return False
        log.info("%s was trained on other classes (%s): fine-tuning it first", source, names[:5])
        return True

    def train_baseline(
        self, ctx: RunContext, source: Path | None, out_path: Path
    ) -> dict[str, Any]:
        from sparsify.baseline import baseline_epochs

        arch = str(ctx.cfg.model.arch)
        if source is None and not bool(ctx.cfg.baseline.allow_scratch):
            raise SparsifyError(
                f"{ctx.cfg.use_case.name} has no model to start from: a {arch} detector trained "
                "from random weights needs hundreds of epochs and thousands of images before its "
                "mAP means anything (3 epochs on 41 images: mAP50-95 0.0), so it is not trained "
                "by default.\n  fix: give a trained Ultralytics checkpoint, model=<path to "
                "best.pt> (e.g. from `yolo train model=yolov8n.pt data=...` where the pretrained "
                "weights can be downloaded), or train from scratch anyway with "
                "baseline.allow_scratch=true (and many epochs: experiment.train.epochs=300)"
            )
        require_ultralytics()
        from ultralytics import YOLO

        yolo = load_yolo(source, trusted(ctx)) if source else YOLO(arch_yaml(arch))
        if yolo.task != _ultra_task(ctx):
            raise SparsifyError(
                f"model {source or arch} is a {yolo.task} model but {ctx.cfg.use_case.name} "
                f"needs {_ultra_task(ctx)}: set model.arch (e.g. yolov8n-seg for segmentation)"
            )
        data_yaml = write_ultralytics_dataset(_summary(ctx), ctx.stage_dir("fetch") / "dataset")
        train = ctx.cfg.experiment.train
        epochs = baseline_epochs(
            ctx.cfg, int(_summary(ctx)["splits"].get("train", 0)), int(train.batch_size)
        )
        if source is None:
            log.warning(
                "Training %s from random weights (baseline.allow_scratch=true): expect a low "
                "mAP unless it trains for hundreds of epochs",
                arch,
            )
        log.info(
            "Training a dense %s baseline with Ultralytics (%s epochs, max_steps %s; "
            "Ultralytics keeps the best epoch on val mAP)",
            source or arch,
            max(1, math.ceil(epochs)),
            train.max_steps,
        )
        trainer = run_training(yolo, ctx, data_yaml, out_path.parent / "ultralytics", epochs)
        best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
        shutil.copyfile(best, out_path)
        shutil.rmtree(best.parent, ignore_errors=True)  # results.csv and args.yaml stay
        out = trainer_metrics(trainer)
        log.info("Dense baseline on val (Ultralytics' validator): %s", out)
        return out

    def fine_tune(
        self,
        model_or_ckpt: nn.Module | Path,
        ctx: RunContext,
        out_dir: Path,
        on_batch_end: BatchHook | None = None,
        epochs: float | None = None,
        hold_sparsity: bool = False,
    ) -> nn.Module:
        """Fine-tune a YOLO model on the run's train split with Ultralytics' trainer; return
        the trained model (fp32, eval mode, BatchNorm unfused, the last step's EMA weights).

        - `model_or_ckpt`: a torch model of this family (e.g. pruned in place) or a
          checkpoint path. Ultralytics rebuilds the model from its YAML and copies the
          weights in, so zeros survive; a channel-pruned model is rebuilt at its own channel
          counts (`thin_trainer`); a class head for other classes is re-initialized.
        - `on_batch_end(model)`: called after every batch (after its optimizer step;
          `nbs` = batch size so each batch is one step) with the model being trained, which
          is *not* the object passed in. Prune or re-apply masks in it there: whatever is
          exactly zero in its Conv/Linear weights afterwards is zeroed in Ultralytics' EMA
          copy too, so validation, checkpoints and the returned model carry the same masks.
          Module names are those of the model passed in (`model.22.cv2.0.0.conv`, ...).
        - `hold_sparsity=True`: masks held fixed: the zeros of `model_or_ckpt` are
          re-applied after every step (`hold_masks(zero_masks(model))`), before
          `on_batch_end`.
        - `epochs` overrides `experiment.train.epochs`; `experiment.train.max_steps`, lr,
          batch size and weight decay come from the run config. Ultralytics' run folder
          (results.csv, best.pt / last.pt) and the dataset links go under `out_dir`.
        """
        require_ultralytics()
        from ultralytics import YOLO

        out_dir = Path(out_dir)
        # `start` passed a weights-only load (save_checkpoint checks what it wrote, self.load
        # reads weights-only), so Ultralytics' full unpickling of it in YOLO() runs no code
        if isinstance(model_or_ckpt, nn.Module):
            start = out_dir / "start.pt"
            save_checkpoint(model_or_ckpt, start)
            model = model_or_ckpt
        else:
            start = Path(model_or_ckpt)
            model = self.load(start, ctx)
        yolo = YOLO(str(start))
        if yolo.task != _ultra_task(ctx):
            raise SparsifyError(
                f"cannot fine-tune a {yolo.task} model for {ctx.cfg.use_case.name}: "
                f"give a {_ultra_task(ctx)} model"
            )
        hooks = [hold_masks(zero_masks(model))] if hold_sparsity else []
        hooks += [on_batch_end] if on_batch_end is not None else []
        if hooks:

            def each_batch(trained: nn.Module) -> None:
                for hook in hooks:
                    hook(trained)

            add_callbacks(yolo, each_batch)
        data_yaml = write_ultralytics_dataset(_summary(ctx), out_dir / "dataset")
        log.info("Fine-tuning %s with Ultralytics (masks held: %s)", start, hold_sparsity)
        trainer = run_training(yolo, ctx, data_yaml, out_dir / "ultralytics", epochs)
        log.info(
            "Last epoch on val (Ultralytics' validator; the model returned): %s",
            trainer_metrics(trainer, last_epoch=True),
        )
        return last_model(trainer)

    def train_sparse(
        self, model: nn.Module, ctx: RunContext, session_for: Any, teacher: nn.Module | None
    ) -> dict[str, Any]:
        """Training-aware pruning through `fine_tune`: the recipe session runs in the
        per-batch hook on Ultralytics' live model (mask updates and re-application);
        Ultralytics keeps its own learning-rate schedule. No QAT here (INT8 comes from
        calibrated quantization of the trained weights) and no distillation."""
        if teacher is not None:
            log.warning(
                "DistillationModifier: Ultralytics' trainer has no distillation hook; "
                "the YOLO model is fine-tuned on its labels only"
            )
        batch = int(ctx.cfg.experiment.train.batch_size)
        steps_per_epoch = max(1, math.ceil(int(_summary(ctx)["splits"]["train"]) / batch))
        state: dict[str, Any] = {"step": 0}

        def hook(live: nn.Module) -> None:
            if "session" not in state:
                state["session"] = session_for(steps_per_epoch, live=live, qat=False)
                state["live"] = live
            session = state["session"]
            session.before_step(state["step"])
            session.after_step(state["step"])
            state["step"] += 1
            events.scalars(state["step"], sparsity=session.sparsity)

        probe = session_for(steps_per_epoch, qat=False)
        # held masks (sparse transfer) are re-applied by fine_tune before our hook runs, so
        # the session's constant pruner sees the foundation's zeros, not a step's drift
        hold = any(isinstance(p, ConstantPruningModifier) for p in probe.pruners)
        out_dir = ctx.stage_dir("sparsify") / "ultralytics"
        events = EventLog(ctx.stage_dir("sparsify") / "tensorboard")
        try:
            trained = self.fine_tune(
                model, ctx, out_dir, on_batch_end=hook, epochs=probe.epochs, hold_sparsity=hold
            )
        finally:
            events.close()
            _keep_results(out_dir, ctx.stage_dir("sparsify") / "ultralytics_results.csv")
            shutil.rmtree(out_dir, ignore_errors=True)
        if "session" not in state:
            raise SparsifyError("Ultralytics trained no batch; check the train split")
        report = state["session"].finish()  # a capped run reaches its final sparsity here
        copy_zeros(state["live"], trained)
        if report.get("structured"):  # channels removed from the live model: the EMA follows
            from sparsify.algorithms.channels import thin_like

            thin_like(trained, state["live"])
        # a head re-initialised for other classes changes shapes: hand back the trained model
        return {**report, "steps": state["step"], "model": trained}

    def load_for_transfer(self, path: Path, ctx: RunContext) -> nn.Module:
        """The foundation checkpoint as it is; Ultralytics' trainer re-initialises its head
        when the data has other classes (fine_tune)."""
        return self.load(path, ctx)

    def load(self, path: Path, ctx: RunContext) -> nn.Module:
        return read_checkpoint(Path(path), trusted(ctx))[0].float().eval()

    def save(self, model: nn.Module, path: Path, ctx: RunContext) -> None:
        """An Ultralytics-format checkpoint (fp32): `YOLO(path)` and `load` both read it."""
        save_checkpoint(model, path)

    def export(self, model: nn.Module, path: Path, ctx: RunContext) -> Path:
        return export_onnx(model, path, int(ctx.cfg.data.image_size), int(ctx.cfg.export.opset))

    def calibration_feeds(self, ctx: RunContext, n: int) -> list[dict[str, np.ndarray]]:
        """`n` letterboxed train images (1, 3, size, size), 0..1 RGB, as the deployment feeds."""
        size = int(ctx.cfg.data.image_size)
        images = calibration_images(_summary(ctx), n, int(ctx.cfg.seed))
        return [{"images": letterbox(load_image(p), size)[0][None]} for p in images]

    def has_labelled_split(self, ctx: RunContext, split: str) -> bool:
        summary = _summary(ctx)
        return bool(summary["splits"].get(split)) and split in summary.get("label_dirs", {})

    def evaluate_onnx(self, engine: Any, ctx: RunContext, split: str = "val") -> dict[str, float]:
        """Box (and mask) mAP@0.5 and @0.5:0.95 on `split`; the use case's metric first."""
        limit = ctx.cfg.data.max_eval_samples
        scores = evaluate_yolo(
            engine,
            _summary(ctx),
            int(ctx.cfg.data.image_size),
            segment=_ultra_task(ctx) == "segment",
            batch=int(ctx.cfg.data.batch_size),
            limit=int(limit) if limit else None,
            split=split,
        )
        metric = str(ctx.cfg.use_case.metric)
        return {metric: scores[metric], **scores} if metric in scores else scores

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
