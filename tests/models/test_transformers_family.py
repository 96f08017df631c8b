"""NLP use cases end to end on a tiny random-init BERT: fine-tune, prune, INT8, deploy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import sparsify
from sparsify.benchmark.onnx_stats import onnx_weight_sparsity
from sparsify.deploy import Answer, Classification, Pipeline
from sparsify.engines.ort import OnnxRuntimeEngine
from sparsify.models.transformers.family import TransformersFamily, load_hf
from sparsify.models.transformers.graph import attention_score_matmuls, fold_attention_scale
from tests.fixtures.hf_models import make_tiny_bert
from tests.fixtures.text import make_qa, make_text_classification, make_token_classification

pytest.importorskip("transformers")

NLP_RUN = [
    "experiment.train.max_steps=8",
    "experiment.train.batch_size=4",
    "experiment.train.lr=5e-3",
    "experiment.calibration_samples=4",
    "data.max_length=48",
    "data.batch_size=4",
    "benchmark.time_s=0.1",
    "benchmark.warmup_s=0.02",
    "benchmark.batch_sizes=[1,2]",
]

CASES = {
    "sentiment": (make_text_classification, "text-classification"),
    "ner": (make_token_classification, "token-classification"),
    "qa": (make_qa, "question-answering"),
}


# the tiny encoder's transformer blocks, the only layers pruned: 2 x (query, key, value,
# attention output 32x32; FFN 32x64 and 64x32)
BLOCK_WEIGHTS = 2 * (4 * 32 * 32 + 2 * 32 * 64)


def block_sparsity(model: Path) -> float:
    """Zero weights of the exported model per weight of the transformer blocks (the pooler and
    head stay dense; INT8 rounds only a few of their weights to zero)."""
    return onnx_weight_sparsity(model)["zeros"] / BLOCK_WEIGHTS


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "model")


@pytest.mark.slow
@pytest.mark.parametrize("use_case", list(CASES))
def test_one_shot_end_to_end(use_case: str, encoder: Path, tmp_path: Path) -> None:
    make_data, task = CASES[use_case]
    data = make_data(tmp_path / "data")
    result = sparsify.run(
        [
            f"use_case={use_case}",
            f"data.path={data}",
            f"model={encoder}",
            "optim_level=0.5",
            *NLP_RUN,
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    assert "prepared here" in result.outputs["fetch"]["source"]  # bare encoder -> new head
    deploy = result.deployment_dir
    config = json.loads((deploy / "config.json").read_text())
    assert config["task"] == task
    assert {i["name"] for i in config["inputs"]} >= {"input_ids", "attention_mask"}
    assert (deploy / "tokenizer.json").is_file() or (deploy / "vocab.txt").is_file()
    sparsity = block_sparsity(deploy / "model.onnx")
    assert abs(sparsity - (0.4 + 0.2 / 0.7 * 0.4)) < 0.01, sparsity
    bench = json.loads((deploy / "benchmark.json").read_text())["engines"]["onnxruntime"]
    for model in ("baseline", "sparsified"):
        accuracy = bench[model]["accuracy"]
        assert accuracy["samples"] == result.outputs["validate"]["data"]["rows"]["val"]
        assert all(0 <= v <= 100 for k, v in accuracy.items() if k != "samples")
    pipe = Pipeline(deploy)
    if task == "text-classification":
        out = pipe("the movie was great")
        assert isinstance(out, Classification) and out.label in config["labels"]
    elif task == "token-classification":
        out = pipe(["john lives in paris", "acme hired mary"])
        assert len(out) == 2 and all(isinstance(e, list) for e in out)
        for entity in out[0]:
            assert "john lives in paris"[entity.start : entity.end] == entity.word
    else:
        out = pipe(
            {
                "question": "what is the capital of france ?",
                "context": "paris is the capital of france .",
            }
        )
        assert isinstance(out, Answer)
        assert out.answer == "paris is the capital of france ."[out.start : out.end]


def _sentiment_run(encoder: Path, tmp_path: Path, *overrides: str) -> sparsify.runner.RunResult:
    """The tiny encoder on generated sentiment data, with `overrides`; must finish."""
    data = make_text_classification(tmp_path / "data")
    result = sparsify.run(
        ["use_case=sentiment", f"data.path={data}", f"model={encoder}", *overrides, *NLP_RUN],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    return result


def test_exported_model_matches_torch(encoder: Path, tmp_path: Path) -> None:
    result = _sentiment_run(
        encoder, tmp_path, "optim_level=0.0", "stages=[validate,fetch,sparsify]"
    )
    model, tokenizer, _ = load_hf(result.run_dir / "fetch" / "model", "text-classification")
    engine = OnnxRuntimeEngine(result.run_dir / "sparsify" / "baseline.onnx")
    enc = tokenizer(
        ["the film was awful", "a good movie"],
        ["i would not watch it again", "x"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        expected = model(**enc).logits.numpy()
    got = engine.run({n: enc[n].numpy() for n in engine.input_names})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_dynamic_int8_end_to_end(encoder: Path, tmp_path: Path) -> None:
    """quantization.format=dynamic: INT8 MatMulInteger weights, sparsity kept, activations
    quantized per batch; benchmarked, measured and deployed like the other formats."""
    result = _sentiment_run(encoder, tmp_path, "optim_level=0.5", "quantization.format=dynamic")
    produced = result.outputs["sparsify"]["quantization"]
    assert produced["format"] == "dynamic" and produced["weight_rounding"] == "gptq"
    deploy = result.deployment_dir
    ops = [n.op_type for n in onnx.load(str(deploy / "model.onnx")).graph.node]
    assert ops.count("MatMulInteger") == produced["quantized_nodes"] >= 12  # 2 layers x 6
    assert "QLinearMatMul" not in ops and "QuantizeLinear" not in ops
    sparsity = block_sparsity(deploy / "model.onnx")
    assert abs(sparsity - (0.4 + 0.2 / 0.7 * 0.4)) < 0.01, sparsity
    table = {row["model"]: row for row in result.table}
    assert table["sparsified"]["accuracy"] is not None
    out = Pipeline(deploy)("the movie was great")
    assert isinstance(out, Classification)


def ffn_recipe(tmp_path: Path, sparsity: float, heads: float = 0.0) -> Path:
    """The built-in training-aware recipe plus FFN-neuron pruning over its first 30 %, and
    with `heads` > 0 attention-head pruning too (a second group)."""
    from importlib import resources

    text = (resources.files("sparsify.builtin_recipes") / "training_aware.yaml").read_text()

    def group(name: str, structure: str, level: float) -> str:
        return (
            f"  {name}:\n"
            "    StructuredPruningModifier:\n"
            f"      structure: {structure}\n"
            f"      final_sparsity: {level}\n"
            "      start_epoch: 0.0\n"
            "      end_epoch: eval(0.3 * num_epochs)\n"
            "      update_frequency: eval(0.05 * num_epochs)\n"
        )

    structured = group("pruning_modifiers", "ffn_neurons", sparsity)
    if heads > 0:
        structured = group("pruning_2_modifiers", "attention_heads", heads) + structured
    assert text.count("  pruning_modifiers:\n") == 1
    path = tmp_path / "ffn.yaml"
    path.write_text(text.replace("  pruning_modifiers:\n", structured))
    return path


def test_ffn_neurons_removed_end_to_end(encoder: Path, tmp_path: Path) -> None:
    """Half the feed-forward neurons leave every block during training: the checkpoint, the
    ONNX models and the package are the narrower model, and it still deploys."""
    from transformers import AutoModelForSequenceClassification

    result = _sentiment_run(
        encoder,
        tmp_path,
        "experiment=training_aware",
        "optim_level=0.5",
        f"recipe={ffn_recipe(tmp_path, 0.5)}",
    )
    sparsify_out = result.outputs["sparsify"]
    assert sparsify_out["structured"] == [
        {"structure": "ffn_neurons", "blocks": 2, "width": 64, "kept": 32, "sparsity": 0.5}
    ]
    model = AutoModelForSequenceClassification.from_pretrained(
        result.run_dir / "sparsify" / "model.pth"
    )
    assert model.config.intermediate_size == 32
    assert model.bert.encoder.layer[1].output.dense.weight.shape == (32, 32)
    shapes = {
        tuple(init.dims)
        for init in onnx.load(str(result.deployment_dir / "model.onnx")).graph.initializer
    }
    assert (32, 64) not in shapes and (64, 32) not in shapes  # no full-width FFN weight left
    assert (32, 32) in shapes
    # optim_level 0.5 prunes 70 % (docs/levels) of what the thinning left
    assert all(abs(v - 0.7) < 0.01 for v in sparsify_out["per_layer_sparsity"].values())
    table = {row["model"]: row for row in result.table}
    assert table["sparsified"]["accuracy"] is not None
    assert isinstance(Pipeline(result.deployment_dir)("the movie was great"), Classification)
    config = json.loads((result.deployment_dir / "config.json").read_text())
    assert config["structured"] == sparsify_out["structured"]
    card = (result.deployment_dir / "README.md").read_text()
    assert "feed-forward layers were narrowed from 64 to 32 neurons" in card


def test_attention_heads_removed_end_to_end(encoder: Path, tmp_path: Path) -> None:
    """Half the heads and half the FFN leave every block: the checkpoint records the head
    count and reloads (its logits are the exported model's), the package deploys."""
    result = _sentiment_run(
        encoder,
        tmp_path,
        "experiment=training_aware",
        "optim_level=0.5",
        f"recipe={ffn_recipe(tmp_path, 0.5, heads=0.5)}",
    )
    assert result.status == "done", result.error
    sparsify_out = result.outputs["sparsify"]
    assert sparsify_out["structured"] == [
        {"structure": "attention_heads", "blocks": 2, "width": 2, "kept": 1, "sparsity": 0.5},
        {"structure": "ffn_neurons", "blocks": 2, "width": 64, "kept": 32, "sparsity": 0.5},
    ]
    checkpoint = result.run_dir / "sparsify" / "model.pth"
    saved = json.loads((checkpoint / "config.json").read_text())
    assert saved["sparsify_attention_heads"] == 1 and saved["num_attention_heads"] == 2
    model, _, fresh = load_hf(checkpoint, "text-classification")
    assert fresh == []
    attention = model.bert.encoder.layer[0].attention
    assert attention.self.query.weight.shape == (16, 32)  # one head of 16
    assert attention.output.dense.weight.shape == (32, 16)
    fp32 = result.run_dir / "sparsify" / "model_fp32.onnx"
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": np.array([[2, 7, 9, 11, 3]], np.int64),
        "attention_mask": np.ones((1, 5), np.int64),
        "token_type_ids": np.zeros((1, 5), np.int64),
    }
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=1e-4, atol=1e-4)
    shapes = {
        tuple(init.dims)
        for init in onnx.load(str(result.deployment_dir / "model.onnx")).graph.initializer
    }
    assert {(32, 16), (16, 32)} <= shapes  # one-head query / key / value, and output
    assert isinstance(Pipeline(result.deployment_dir)("the movie was great"), Classification)
    card = (result.deployment_dir / "README.md").read_text()
    assert "self-attention layers were cut from 2 to 1 heads" in card


def test_model_folder_problems_are_clear(tmp_path: Path) -> None:
    data = make_text_classification(tmp_path / "data")
    (tmp_path / "empty").mkdir()
    result = sparsify.run(
        ["use_case=sentiment", f"data.path={data}", f"model={tmp_path / 'empty'}"],
        run_dir=tmp_path / "run",
    )
    assert result.status == "failed"
    assert "config.json" in result.error
    result = sparsify.run(
        ["use_case=sentiment", f"data.path={data}", "model=nobody/nothing-here"],
        run_dir=tmp_path / "run2",
    )
    assert result.status == "failed"
    assert "Hugging Face cache" in result.error


def test_quantization_writes_nothing_in_the_working_directory(
    encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # QA graphs make ORT's shape inference give up and dump temp files into the cwd
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    data = make_qa(tmp_path / "data")
    result = sparsify.run(
        [
            "use_case=qa",
            f"data.path={data}",
            f"model={encoder}",
            "optim_level=0.2",
            "stages=[validate,fetch,sparsify]",
            *NLP_RUN,
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    assert list(work.iterdir()) == []
    assert not [
        p for p in (tmp_path / "run" / "sparsify").iterdir() if p.name.startswith(".quant-")
    ]


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from sparsify.errors import SparsifyError
    from sparsify.models.transformers.family import require_transformers

    monkeypatch.setitem(sys.modules, "transformers", None)  # import now raises ImportError
    with pytest.raises(SparsifyError, match=r"pip install 'sparsify\[nlp\]'"):
        require_transformers()


@pytest.mark.slow
@pytest.mark.parametrize("use_case", ["sentiment", "qa"])
def test_training_aware_through_the_trainer(use_case: str, encoder: Path, tmp_path: Path) -> None:
    make_data, _ = CASES[use_case]
    result = sparsify.run(
        [
            f"use_case={use_case}",
            "experiment=training_aware",
            f"data.path={make_data(tmp_path / 'data')}",
            f"model={encoder}",
            "optim_level=0.5",
            *NLP_RUN,
        ],
        run_dir=tmp_path / "run",
    )
    assert result.status == "done", result.error
    produced = result.outputs["sparsify"]
    assert produced["qat"] is True and produced["steps"] == 8
    assert "masks updated" in [e["event"] for e in produced["events"]]
    # training-aware level 0.5 -> 70 % of the prunable weights, kept through INT8 export
    sparsity = block_sparsity(result.deployment_dir / "model.onnx")
    assert abs(sparsity - 0.7) < 0.01, sparsity
    assert not (result.run_dir / "sparsify" / "trainer").exists()
    events = list((result.run_dir / "sparsify" / "tensorboard").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # the learning rate logged is the recipe's cosine, not the Trainer's constant one
    logged = EventAccumulator(str(events[0].parent)).Reload()
    lrs = [e.value for e in logged.Scalars("train/learning_rate")]
    assert len(lrs) >= 2 and lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]


@pytest.mark.parametrize("experiment", ["one_shot", "training_aware"])
def test_only_the_transformer_blocks_are_pruned(
    experiment: str, encoder: Path, tmp_path: Path
) -> None:
    """The pooler and the task head stay dense (they carry no compute worth pruning, and the
    head is all the new task has); every Linear of the encoder's blocks reaches the target."""
    from transformers import AutoModelForSequenceClassification

    result = _sentiment_run(
        encoder,
        tmp_path,
        f"experiment={experiment}",
        "optim_level=0.5",
        "stages=[validate,fetch,sparsify]",
    )
    per_layer = result.outputs["sparsify"]["per_layer_sparsity"]
    blocks = {
        f"bert.encoder.layer.{i}.{name}"
        for i in range(2)
        for name in (
            "attention.self.query", "attention.self.key", "attention.self.value",
            "attention.output.dense", "intermediate.dense", "output.dense",
        )
    }  # fmt: skip
    assert set(per_layer) == blocks
    target = 0.7 if experiment == "training_aware" else 0.4 + 0.2 / 0.7 * 0.4
    assert all(abs(v - target) < 0.01 for v in per_layer.values()), per_layer
    model = AutoModelForSequenceClassification.from_pretrained(
        result.run_dir / "sparsify" / "model.pth"
    )
    for dense in (model.bert.pooler.dense, model.classifier):
        # unpruned: QAT's INT8 grid (training-aware) rounds only the tiniest weights to zero
        zeros = 1 - torch.count_nonzero(dense.weight) / dense.weight.numel()
        assert zeros < (0.05 if experiment == "training_aware" else 1e-9), zeros


def test_head_pattern_names_what_lies_outside_the_blocks() -> None:
    from sparsify.algorithms.pruning import select_layers
    from sparsify.models.transformers.family import OUTSIDE_BLOCKS

    names = {
        "bert.encoder.layer.11.attention.self.query": False,
        "distilbert.transformer.layer.3.ffn.lin1": False,
        "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn": False,
        "model.layers.2.mlp.up_proj": False,
        "bert.pooler.dense": True,
        "classifier": True,
        "classifier.out_proj": True,
        "pre_classifier": True,
        "qa_outputs": True,
        "albert.encoder.embedding_hidden_mapping_in": True,
    }
    net = torch.nn.Module()
    for name in names:
        parent = net
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, torch.nn.Linear(2, 2))
    ignored = set(names) - set(select_layers(net, ignore=[OUTSIDE_BLOCKS]))
    assert ignored == {name for name, outside in names.items() if outside}


def test_attention_scores_stay_float_in_qoperator_only(encoder: Path, tmp_path: Path) -> None:
    """Q.K^T (one per layer, found through its Softmax) is left float in QOperator, where
    DeepSparse compiles it only so; every other MatMul is INT8. QDQ quantizes it too."""
    result = _sentiment_run(
        encoder, tmp_path, "optim_level=0.2", "stages=[validate,fetch,sparsify]"
    )
    fp32 = onnx.load(str(result.run_dir / "sparsify" / "baseline.onnx"))
    scores = attention_score_matmuls(fp32)
    assert len(scores) == 2 and all(name.endswith("/attention/self/MatMul") for name in scores)
    final = onnx.load(str(result.run_dir / "sparsify" / "model.onnx")).graph.node
    assert sorted(n.name for n in final if n.op_type == "MatMul") == sorted(scores)
    # per layer: Q, K, V, attention output, 2 FFN, probs.V
    assert [n.op_type for n in final].count("QLinearMatMul") == 2 * 7
    family = TransformersFamily()
    assert family.int8_float_nodes(fp32, "qdq") == family.int8_float_nodes(fp32, "dynamic") == []


@pytest.mark.parametrize(
    ("experiment", "fused"),
    [("one_shot", True), ("one_shot", False), ("training_aware", True)],
)
def test_qdq_writes_onnx_runtimes_matmul_bias_kernel(
    encoder: Path, tmp_path: Path, experiment: str, fused: bool
) -> None:
    """QDQ (post-training, also of QAT-trained weights): each encoder Linear is one
    MatMulIntegerToFloat with its bias inside, and the attention MatMuls (Q.K^T, probs.V)
    read INT8 inputs too; `quantization.ort_fusions=false` keeps the pure-ONNX QDQ graph.
    Either way the package deploys and keeps its sparsity."""
    result = _sentiment_run(
        encoder,
        tmp_path,
        f"experiment={experiment}",
        "optim_level=0.5",
        "quantization.format=qdq",
        f"quantization.ort_fusions={str(fused).lower()}",
    )
    produced = result.outputs["sparsify"]["quantization"]
    model = onnx.load(str(result.deployment_dir / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    linears = 2 * 6  # per layer: Q, K, V, attention output, 2 FFN
    assert produced["ort_fused_matmuls"] == ops.count("MatMulIntegerToFloat")
    assert ops.count("MatMulIntegerToFloat") == (linears if fused else 0)
    assert ops.count("MatMul") == (2 * 2 if fused else linears + 2 * 2)  # Q.K^T, probs.V
    assert any(op.domain == "com.microsoft" for op in model.opset_import) == fused
    # QAT's own graph would leave attention float: transformers re-quantize after QAT
    assert produced.get("source") != "qat"
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    scores = set(attention_score_matmuls(model))
    assert len(scores) == 2  # one Q.K^T per layer
    for node in (n for n in model.graph.node if n.name in scores):
        assert [producers.get(i) for i in node.input] == ["DequantizeLinear"] * 2
    sparsity = block_sparsity(result.deployment_dir / "model.onnx")
    assert sparsity > 0.5, sparsity
    out = Pipeline(result.deployment_dir)("the movie was great")
    assert isinstance(out, Classification)


@pytest.mark.parametrize("masked", [True, False])
def test_attention_scale_is_folded_into_the_projections(tmp_path: Path, masked: bool) -> None:
    """torch's attention scale Muls are gone from the exported graph (the projections'
    weights and biases scaled instead) and the outputs are unchanged, with and without a
    padding mask."""
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(
        make_tiny_bert(tmp_path / "bert", head="text-classification")
    ).eval()
    ids = torch.randint(5, 30, (3, 11))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    inputs = {"input_ids": ids, **({"attention_mask": mask} if masked else {})}
    torch.onnx.export(
        model, tuple(inputs.values()), str(tmp_path / "m.onnx"), dynamo=False,
        opset_version=17, input_names=list(inputs), output_names=["logits"],
    )  # fmt: skip
    exported = onnx.load(str(tmp_path / "m.onnx"))

    def run(m: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]

    before = run(exported)
    scores = attention_score_matmuls(exported)

    def around_scores(graph: onnx.GraphProto) -> list[str]:
        """The op types feeding and reading the 2 layers' Q.K^T MatMuls."""
        matmuls = [n for n in graph.node if n.name in scores]
        made = {o: n.op_type for n in graph.node for o in n.output}
        ins = [made[i] for m in matmuls for i in m.input]
        outs = {m.output[0] for m in matmuls}
        return ins + [n.op_type for n in graph.node if set(n.input) & outs]

    scales = around_scores(exported.graph).count("Mul")
    assert scales in (2, 4)  # per layer: after Q.K^T, or on Q and on K (torch picks)
    assert fold_attention_scale(exported) == scales
    assert "Mul" not in around_scores(exported.graph)
    np.testing.assert_allclose(run(exported), before, rtol=1e-5, atol=1e-5)
    assert fold_attention_scale(exported) == 0  # nothing left to fold
