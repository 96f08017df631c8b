"""Pipeline on image deployments: classification, and YOLO checked against Ultralytics."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from sparsify.deploy import Classification, Detection, InputError, Pipeline
from sparsify.deploy.detection import mask_to_rle
from sparsify.deploy.preprocess import ImagePreprocess, preprocess_image
from sparsify.errors import SparsifyError
from sparsify.runner import RunResult
from tests.fixtures.yolo import draw_sample


def test_classification_accepts_paths_pil_arrays_and_bytes(
    classifier_run: RunResult, tiny_images: Path
) -> None:
    pipe = Pipeline(classifier_run.deployment_dir)
    path = tiny_images / "val" / "b" / "0.png"
    image = Image.open(path).convert("RGB")
    results = pipe([path, str(path), image, np.asarray(image), path.read_bytes()])
    assert all(isinstance(r, Classification) for r in results)
    assert len({(r.label, round(r.score, 6)) for r in results}) == 1  # same image, same answer
    # the model itself, fed by hand: the Pipeline's probabilities are its softmax
    config = json.loads((classifier_run.deployment_dir / "config.json").read_text())
    params = ImagePreprocess(**{k: v for k, v in config["preprocessing"].items() if k != "type"})
    session = ort.InferenceSession(str(classifier_run.deployment_dir / "model.onnx"))
    logits = session.run(None, {"input": preprocess_image(image, params)[None]})[0][0]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert results[0].index == int(probs.argmax())
    assert results[0].label == config["labels"][results[0].index]
    assert results[0].score == pytest.approx(float(probs.max()), abs=1e-5)


def test_classification_top_k_grey_and_rgba(classifier_run: RunResult) -> None:
    pipe = Pipeline(classifier_run.deployment_dir)
    grey = np.full((20, 30), 128, np.uint8)
    top = pipe(grey, top_k=3)
    assert [c.label for c in top] != [] and sorted(c.label for c in top) == ["a", "b", "c"]
    assert [c.score for c in top] == sorted((c.score for c in top), reverse=True)
    assert sum(c.score for c in top) == pytest.approx(1.0, abs=1e-5)
    assert top[0].to_dict() == {"label": top[0].label, "score": top[0].score, "index": top[0].index}
    rgba = np.dstack([np.stack([grey] * 3, -1), np.full((20, 30), 255, np.uint8)])
    assert pipe(rgba).label == top[0].label
    assert pipe(grey[..., None]).label == top[0].label
    assert pipe([]) == []


def test_bad_image_inputs_raise_input_error(classifier_run: RunResult, tmp_path: Path) -> None:
    pipe = Pipeline(classifier_run.deployment_dir)
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cases = [
        (tmp_path / "missing.png", "does not exist"),
        (garbage, "cannot decode"),
        (b"", "cannot decode"),
        (np.zeros((4, 4, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
        (42, "must be a path"),
    ]
    for value, message in cases:
        with pytest.raises(InputError, match=message):
            pipe(value)
    with pytest.raises(InputError, match="top_k must be an integer from 1 to 3"):
        pipe(np.zeros((8, 8, 3), np.uint8), top_k=4)
    with pytest.raises(InputError, match=r"unknown option\(s\) \['conf'\]; this task takes: top_k"):
        pipe(np.zeros((8, 8, 3), np.uint8), conf=0.5)
    big = Pipeline(classifier_run.deployment_dir, max_pixels=100)
    with pytest.raises(InputError, match="pixels; the limit is 100"):
        big(np.zeros((11, 10, 3), np.uint8))
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buffer, format="PNG")
    with pytest.raises(InputError, match="limit is 100"):
        big(buffer.getvalue())  # checked before decoding


def test_not_a_deployment_and_unknown_engine(classifier_run: RunResult, tmp_path: Path) -> None:
    with pytest.raises(SparsifyError, match="not a sparsify deployment folder"):
        Pipeline(tmp_path)
    with pytest.raises(SparsifyError, match="unknown engine 'tensorrt'; known engines"):
        Pipeline(classifier_run.deployment_dir, engine="tensorrt")


@pytest.mark.parametrize("use_case", ["cv-detection", "cv-segmentation"])
def test_yolo_pipeline_matches_ultralytics_predict(
    yolo_deployments: dict[str, tuple[Path, Path]], use_case: str, tmp_path: Path
) -> None:
    """The ONNX export and its checkpoint: our letterbox, NMS, rescale, masks == Ultralytics'."""
    from ultralytics import YOLO

    deployment, checkpoint = yolo_deployments[use_case]
    pipe = Pipeline(deployment)
    yolo = YOLO(str(checkpoint))
    segment = use_case == "cv-segmentation"
    rng = np.random.default_rng(3)
    compared = 0
    for size in ((100, 60), (50, 90)):  # letterbox pads rows, then columns
        image, _ = draw_sample(2, size, rng, segment, 2)
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        image.save(path)
        mine = pipe(path, conf_threshold=0.001)
        theirs = yolo.predict(
            str(path), imgsz=64, conf=0.001, iou=0.7, verbose=False, retina_masks=True
        )[0]
        assert len(mine) == len(theirs.boxes) > 0
        assert all(isinstance(d, Detection) for d in mine)
        np.testing.assert_allclose([d.box for d in mine], theirs.boxes.xyxy.numpy(), atol=0.05)
        np.testing.assert_allclose([d.score for d in mine], theirs.boxes.conf.numpy(), atol=1e-4)
        assert [d.class_id for d in mine] == theirs.boxes.cls.numpy().astype(int).tolist()
        assert {d.label for d in mine} <= {"box", "disc"}
        if segment:
            masks = theirs.masks.data.numpy() > 0.5
            for d, want in zip(mine, masks, strict=True):
                assert d.mask is not None and d.mask.shape == (size[1], size[0])
                iou = (d.mask & want).sum() / max((d.mask | want).sum(), 1)
                assert iou > 0.95
        compared += len(mine)
    assert compared >= 2


@pytest.mark.parametrize("use_case", ["cv-detection", "cv-segmentation"])
def test_yolo_deployment_outputs_and_options(
    yolo_deployments: dict[str, tuple[Path, Path]], use_case: str
) -> None:
    pipe = Pipeline(yolo_deployments[use_case][0])
    assert pipe.options == {"conf_threshold": 0.25, "iou_threshold": 0.7, "max_detections": 300}
    image = np.asarray(draw_sample(2, (80, 64), np.random.default_rng(0), True, 2)[0])
    found = pipe([image, image], conf_threshold=0.0, max_detections=3)
    assert len(found) == 2 and [len(f) for f in found] == [3, 3]
    assert [d.to_dict() for d in found[0]] == [d.to_dict() for d in found[1]]
    for d in found[0]:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 80 and 0 <= y1 <= y2 <= 64
        out = d.to_dict()
        assert set(out) == {"box", "score", "class_id", "label"} | (
            {"mask"} if use_case == "cv-segmentation" else set()
        )
        if d.mask is not None:
            assert out["mask"] == mask_to_rle(d.mask) and sum(out["mask"]["counts"]) == 80 * 64
    assert pipe(image, conf_threshold=1.0) == []
    with pytest.raises(InputError, match="conf_threshold must be a number from 0 to 1"):
        pipe(image, conf_threshold=1.5)


def test_any_decoder_failure_is_an_input_error(
    classifier_run: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Openers registered by other libraries (Ultralytics adds HEIF) fail in their own ways."""

    def broken_open(*args: object, **kwargs: object) -> Image.Image:
        raise ModuleNotFoundError("No module named 'pi_heif'")

    monkeypatch.setattr(Image, "open", broken_open)
    with pytest.raises(InputError, match="cannot decode the image: ModuleNotFoundError"):
        Pipeline(classifier_run.deployment_dir)(b"\x00\x01 not an image")
