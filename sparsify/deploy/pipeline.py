"""Pipeline(deployment_dir)(inputs): the packaged model with its pre/post-processing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsify.deploy.inputs import MAX_PIXELS
from sparsify.deploy.results import Answer, Classification, Detection, Entity
from sparsify.engines.registry import load_engine
from sparsify.errors import SparsifyError

IMAGE_TASKS = ("image-classification", "object-detection", "instance-segmentation")
TEXT_TASKS = ("text-classification", "token-classification", "question-answering")
TASKS = IMAGE_TASKS + TEXT_TASKS


def read_config(deployment_dir: Path) -> dict[str, Any]:
    path = Path(deployment_dir) / "config.json"
    if not path.is_file():
        raise SparsifyError(
            f"{deployment_dir} is not a sparsify deployment folder (no config.json); "
            "give the deployment/ folder of a finished run"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SparsifyError(f"{path} is not valid JSON: {exc}") from None
    missing = [k for k in ("task", "model", "preprocessing", "postprocessing") if k not in config]
    if missing:
        raise SparsifyError(f"{path} lacks {missing}; re-run the package stage")
    return config


class Pipeline:
    """Load a deployment folder written by sparsify and run it on raw inputs.

    | task | one input | result per input | options |
    |---|---|---|---|
    | image-classification | path, PIL image, HWC uint8 array, encoded bytes | Classification | top_k |
    | object-detection | as above | list[Detection] | conf_threshold, iou_threshold, max_detections |
    | instance-segmentation | as above | list[Detection] with masks | as detection |
    | text-classification | str, or a (text, text_pair) tuple | Classification | top_k |
    | token-classification | str | list[Entity] | |
    | question-answering | {"question": str, "context": str} | Answer | |

    One input gives one result; a list gives a list. top_k > 1 gives a list of the k best.
    Bad inputs raise `sparsify.deploy.InputError`. Calls are safe from several threads.

    `engine`: "onnxruntime" (in this process), "openvino" or "deepsparse" (each in a worker
    process, one call at a time); `num_threads` None uses the CPUs this process may use.
    """

    def __init__(
        self,
        deployment_dir: str | Path,
        engine: str = "onnxruntime",
        num_threads: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.dir = Path(deployment_dir)
        self.config = read_config(self.dir)
        self.task: str = str(self.config["task"])
        if self.task not in TASKS:
            raise SparsifyError(
                f"task {self.task!r} has no pipeline in this version; known: {', '.join(TASKS)}"
            )
        self.engine = load_engine(engine, self.dir / self.config["model"], num_threads)
        self.engine_name: str = str(getattr(self.engine, "name", engine))
        self.labels: list[str] = [str(x) for x in self.config.get("labels", [])]
        self.runner = self._task(max_pixels)

    def _task(self, max_pixels: int) -> Any:
        from sparsify.deploy import nlp, vision

        if self.task == "image-classification":
            return vision.ImageClassificationTask(self.engine, self.config, max_pixels)
        if self.task in IMAGE_TASKS:
            return vision.YoloTask(self.engine, self.config, max_pixels)
        tokenizer = nlp.load_tokenizer(self.dir)
        kind = {
            "text-classification": nlp.TextClassificationTask,
            "token-classification": nlp.TokenClassificationTask,
            "question-answering": nlp.QuestionAnsweringTask,
        }[self.task]
        return kind(self.engine, self.config, tokenizer)

    @property
    def options(self) -> dict[str, Any]:
        """The keyword options this task takes, with their defaults."""
        return self.runner.options()

    def __call__(self, inputs: Any, **options: Any) -> Any:
        single = not isinstance(inputs, list)
        batch = [inputs] if single else list(inputs)
        results = self.runner(batch, **options) if batch else []
        return results[0] if single else results


__all__ = ["Answer", "Classification", "Detection", "Entity", "Pipeline", "TASKS"]
