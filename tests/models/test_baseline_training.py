"""How each family trains the dense baseline: Hugging Face's fine-tuning recipe with the best
epoch by the val metric, a pretrained image classifier when torchvision's weights are cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import sparsify
from sparsify.config import compose_config

pytest.importorskip("transformers")


def test_transformers_baseline_arguments_follow_the_fine_tuning_recipe(tmp_path: Path) -> None:
    import transformers

    from sparsify.models.transformers.training import baseline_arguments

    cfg = compose_config(["use_case=ner"])
    args = baseline_arguments(
        transformers, tmp_path, cfg.experiment.train, 9.0, "entity_f1", seed=0, use_cpu=True
    )
    assert 2e-5 <= args.learning_rate <= 1e-4  # not 1e-3: that left MiniLM predicting "O"
    assert args.warmup_steps == 0.1 and args.get_warmup_steps(100) == 10
    assert str(args.lr_scheduler_type.value) == "linear"
    assert args.num_train_epochs == 9.0
    assert args.metric_for_best_model == "entity_f1" and args.greater_is_better
    assert args.load_best_model_at_end and str(args.eval_strategy.value) == "epoch"


@pytest.mark.parametrize("use_case", ["ner", "qa", "sentiment"])
def test_the_trainer_receives_the_defaults(
    use_case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The composed defaults reach the Trainer: lr 5e-5, warmup, best epoch by the use case's
    metric, epochs stretched for a small train split, early stopping patience."""
    from sparsify.models.transformers import training
    from tests.fixtures.hf_models import make_tiny_bert
    from tests.fixtures.text import make_qa, make_text_classification, make_token_classification

    make = {"ner": make_token_classification, "qa": make_qa}.get(use_case, make_text_classification)
    seen: dict[str, Any] = {}

    def capture(transformers: Any, model: Any, dataset: Any, *rest: Any) -> dict[str, Any]:
        *_, val, args, patience = rest
        seen.update(args=args, patience=patience, n_val=len(val), n_train=len(dataset))
        return {"steps": 0}

    monkeypatch.setattr(training, "train_baseline_with_trainer", capture)
    result = sparsify.run(
        [
            f"use_case={use_case}",
            f"data.path={make(tmp_path / 'data')}",
            f"model={make_tiny_bert(tmp_path / 'bert')}",
            "data.max_length=48",
            "stages=[validate,fetch]",
            f"cache_dir={tmp_path / 'cache'}",
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    args = seen["args"]
    metric = {"ner": "entity_f1", "qa": "f1", "sentiment": "accuracy"}[use_case]
    assert args.learning_rate == pytest.approx(5e-5) and args.warmup_steps == 0.1
    assert args.metric_for_best_model == metric and args.load_best_model_at_end
    assert args.max_steps == -1 and args.num_train_epochs == 50  # tiny split: max_epochs
    assert seen["patience"] == 5 and seen["n_val"] > 0


def test_the_best_epoch_is_kept_and_measured_as_the_benchmark_measures_it(
    tmp_path: Path,
) -> None:
    """Real training: the Trainer's per-epoch val metric (torch, through the deployment's
    TextRunner) is the number the gate then measures on the exported ONNX model."""
    from tests.fixtures.hf_models import make_tiny_bert
    from tests.fixtures.text import make_token_classification

    result = sparsify.run(
        [
            "use_case=ner",
            f"data.path={make_token_classification(tmp_path / 'data')}",
            f"model={make_tiny_bert(tmp_path / 'bert')}",
            "experiment.train.max_steps=8",
            "experiment.train.batch_size=4",
            "experiment.train.lr=5e-3",
            "data.max_length=48",
            "data.batch_size=4",
            "baseline.gate=warn",
            "stages=[validate,fetch]",
            f"cache_dir={tmp_path / 'cache'}",
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    fetch = result.outputs["fetch"]
    assert fetch["baseline"]["steps"] == 8
    assert fetch["baseline_gate"]["value"] == pytest.approx(fetch["baseline"]["val_entity_f1"])


def test_image_classifier_starts_from_cached_torchvision_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    from sparsify.models.classifier.family import _fresh_model
    from sparsify.models.classifier.model import build_model
    from sparsify.models.classifier.training import cached_pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert cached_pretrained("resnet18") is None  # nothing cached: never downloaded
    assert _fresh_model("resnet18", 3)[1] == "random weights"
    assert cached_pretrained("tinynet") is None  # no torchvision weights for it

    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    cached = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    imagenet = build_model("resnet18", 1000).state_dict()
    torch.save(imagenet, cached)
    assert cached_pretrained("resnet18") == (cached, "ResNet18_Weights.IMAGENET1K_V1")
    model, start = _fresh_model("resnet18", 3)
    assert start == "pretrained ResNet18_Weights.IMAGENET1K_V1"
    assert torch.equal(model.state_dict()["conv1.weight"], imagenet["conv1.weight"])
    assert model.fc.out_features == 3  # a new head for the data's classes
