"""Hugging Face transformers: sequence classification, token classification, extractive QA.

Models come from a local folder (config + weights + tokenizer) or a hub id already in the
local Hugging Face cache; fine-tuning goes through `transformers.Trainer`.
"""

from __future__ import annotations

import inspect
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsify import distributed
from sparsify.algorithms.structured import HEADS_FIELD, set_attention_heads
from sparsify.context import RunContext
from sparsify.data.subset import split_subset
from sparsify.errors import Problem, SparsifyError
from sparsify.models.base import ModelFamily
from sparsify.models.safe_load import refused_globals, torch_load, trusted, unsafe_problem
from sparsify.models.transformers.graph import attention_score_matmuls, fold_attention_scale
from sparsify.outputs import FetchOutput, ValidateOutput

log = logging.getLogger("sparsify")

AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
}
DOC_STRIDE = 32
# Linear layers outside the numbered transformer blocks (`encoder.layer.N.`, DistilBERT's
# `transformer.layer.N.`, ALBERT's `albert_layers.N.`, `layers.N.`, `blocks.N.`, `h.N.`): the task
# head (classifier, qa_outputs), the pooler and embedding projections. They hold under 2 % of
# MiniLM-L6's Linear weights and no measurable time (DeepSparse: 0.07 of 59 ms per batch of 16),
# and a 90 % sparse 2-class head keeps 77 of its 768 weights, so pruning stays in the blocks,
# as SparseML's BERT recipes do.
OUTSIDE_BLOCKS = r"re:(?!(.*\.)?\w*(layer|layers|block|blocks|h)\.\d+\.).*"


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise SparsifyError(
            "the NLP use cases need Hugging Face transformers: pip install 'sparsify[nlp]'"
        ) from None
    return transformers


def _task(ctx: RunContext) -> str:
    return str(ctx.cfg.use_case.task)


def _labels(ctx: RunContext) -> list[str]:
    return [str(x) for x in ctx.output(ValidateOutput).summary.get("labels", [])]


def _records(ctx: RunContext, split: str) -> list[dict[str, Any]]:
    from sparsify.data.text import load_split

    validated = ctx.output(ValidateOutput)
    records = load_split(validated.data_dir, validated.summary, split)
    return split_subset(records, ctx.cfg, split)  # data.train_samples / data.val_samples


def resolve_hf_source(path_or_id: str) -> Path:
    """A local model folder, or a hub id resolved from the local HF cache (never downloaded)."""
    local = Path(path_or_id).expanduser()
    if local.exists():
        return local.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path_or_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - every failure here means "not available offline"
        raise SparsifyError(
            f"model {path_or_id!r} is neither a local folder nor in the local Hugging Face cache; "
            "give a folder holding config.json, the weights and the tokenizer, or download the "
            f"model once where there is network (huggingface-cli download {path_or_id})"
        ) from None


def load_hf(
    path: Path, task: str, labels: list[str] | None = None, trust: bool = False
) -> tuple[nn.Module, Any, list[str]]:
    """(model, tokenizer, names of weights that were newly initialised). Pickled weights
    (pytorch_model.bin) are read weights-only unless `trust` (model.trust_pickle)."""
    transformers = require_transformers()
    auto = getattr(transformers, AUTO_CLASSES[task])
    kwargs: dict[str, Any] = {"attn_implementation": "eager"}  # traces to plain ONNX ops
    if labels and task != "question-answering":
        kwargs.update(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            ignore_mismatched_sizes=True,
        )
    config = transformers.AutoConfig.from_pretrained(str(path))
    heads = getattr(config, HEADS_FIELD, None)
    if heads:  # attention heads were removed: shapes the stock loader cannot build
        model, info = _load_head_pruned(auto, path, config, int(heads), kwargs, trust)
    else:
        if any(f.suffix == ".bin" for f in _state_dict_files(Path(path))):
            # pickled weights are read by us: weights-only with a clear refusal, or fully with
            # `trust` (transformers 5 reads .bin weights-only whatever weights_only says); it
            # takes a state dict only with a config object, no path, and the model class
            _set_labels(config, kwargs)
            state = _read_state(Path(path), trust)
            model, info = auto._model_mapping[type(config)].from_pretrained(
                None, config=config, state_dict=state, output_loading_info=True, **kwargs
            )
        else:
            model, info = auto.from_pretrained(str(path), output_loading_info=True, **kwargs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    if not getattr(tokenizer, "is_fast", False):
        raise SparsifyError(f"{path}: a fast tokenizer (tokenizer.json) is needed for offsets")
    fresh = list(info.get("missing_keys", [])) + [
        m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys", [])
    ]
    return model.eval(), tokenizer, fresh


def _state_dict_files(path: Path) -> list[Path]:
    """The weight files of a save_pretrained folder: safetensors (sharded or not), else bin."""
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        found = sorted(path.glob(pattern))
        if found:
            return found
    raise SparsifyError(f"{path}: no model.safetensors or pytorch_model.bin to load weights from")


def _read_state(path: Path, trust: bool) -> dict[str, torch.Tensor]:
    """The tensors of a save_pretrained folder; pickled files weights-only unless `trust`."""
    state: dict[str, Any] = {}
    for file in _state_dict_files(path):
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(file)))
        else:
            state.update(torch_load(file, trust))
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def _set_labels(config: Any, kwargs: dict[str, Any]) -> None:
    """Move the label kwargs onto `config`: with a config object, transformers would pass
    them to the model's __init__."""
    for key in ("num_labels", "id2label", "label2id"):
        if key in kwargs:
            setattr(config, key, kwargs.pop(key))


def _load_head_pruned(
    auto: Any, path: Path, config: Any, heads: int, kwargs: dict[str, Any], trust: bool
) -> tuple[nn.Module, dict[str, list]]:
    """A checkpoint saved after attention_heads pruning: the model built from its config,
    each self-attention thinned to `heads` heads (`set_attention_heads`), then its weights
    loaded. Like `from_pretrained(ignore_mismatched_sizes=True)`, weights whose shape differs
    (a head for other labels) stay freshly initialised and are reported as mismatched."""
    _set_labels(config, kwargs)
    model = auto.from_config(config, attn_implementation=kwargs["attn_implementation"])
    set_attention_heads(model, heads)
    state = _read_state(Path(path), trust)
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched and not kwargs.get("ignore_mismatched_sizes"):
        raise SparsifyError(
            f"{path}: weights {mismatched[:3]} do not fit a model with {heads} attention heads "
            "per block (config.sparsify_attention_heads); the checkpoint is inconsistent"
        )
    missing, _unexpected = model.load_state_dict(
        {k: v for k, v in state.items() if k not in mismatched}, strict=False
    )
    missing = [k for k in missing if k not in mismatched]  # reported once, as mismatched
    return model, {"missing_keys": missing, "mismatched_keys": mismatched}


def _pickle_problems(path: Path) -> list[Problem]:
    """The pickled weight files (pytorch_model*.bin, read when there is no safetensors) that a
    weights-only load refuses: found here, not as a traceback from transformers in fetch."""
    try:
        files = [f for f in _state_dict_files(Path(path)) if f.suffix == ".bin"]
    except SparsifyError:
        return []  # no weights at all: from_pretrained says so
    refused = {f: refused_globals(f) for f in files}
    bad = [f for f, names in refused.items() if names]
    if not bad:
        return []
    names = sorted({name for f in bad for name in refused[f]})
    return [unsafe_problem(bad[0] if len(bad) == 1 else Path(path), names)]


class _Features(torch.utils.data.Dataset):
    def __init__(self, features: dict[str, list]) -> None:
        self.features = features
        self.n = len(next(iter(features.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.features.items()}


def encode_train(
    records: list[dict], tokenizer: Any, task: str, labels: list[str], max_length: int
) -> dict:
    from sparsify.data import text_features as tf

    if task == "text-classification":
        return tf.encode_classification(records, tokenizer, labels, max_length)
    if task == "token-classification":
        return tf.encode_token_classification(records, tokenizer, labels, max_length)
    return tf.encode_qa_train(records, tokenizer, max_length, DOC_STRIDE)


def _collator(transformers: Any, tokenizer: Any, task: str) -> Any:
    """Pads each training batch to its longest row (the features are not padded)."""
    if task == "token-classification":
        return transformers.DataCollatorForTokenClassification(tokenizer)
    return transformers.DataCollatorWithPadding(tokenizer)


class TransformersFamily(ModelFamily):
    name = "transformers"
    artifact_name = "model"
    prune_ignore = (OUTSIDE_BLOCKS,)
    # QAT fake-quantizes only the Linear layers, so its exported QDQ graph leaves attention
    # (Q.K^T, Softmax, probs.V) float; ONNX Runtime's post-training QDQ of the QAT-trained
    # weights quantizes it too. MiniLM-L6 with half its FFN, batch 16: 100 against 122 ms per
    # batch, 97.8 against 98.2 accuracy (benchmarks/RESULTS.md)
    export_qat_graph = False

    def int8_float_nodes(self, model: Any, fmt: str) -> list[str]:
        """In QOperator (DeepSparse's format) the attention scores' MatMul (Q.K^T) stays
        float: DeepSparse 1.8 compiles it (with the mask Add and Softmax) when float, but runs
        its QLinearMatMul in a slow naive subgraph. MiniLM-L6, 90 % block4 sparse + INT8,
        batch 16, 2 cores: 63 -> 52 ms/batch (deepsparse.benchmark), supported ops 0.97 ->
        0.99. ONNX Runtime's formats (qdq, dynamic) quantize it."""
        return attention_score_matmuls(model) if fmt == "qoperator" else []

    def arch_problems(self, arch: str) -> list[Problem]:
        return []  # the model folder's config.json decides the architecture

    def resolve_source(self, ctx: RunContext) -> Path | None:
        if not ctx.cfg.model.path:
            raise SparsifyError("NLP use cases need model.path: a model folder or a cached hub id")
        return resolve_hf_source(str(ctx.cfg.model.path))

    def checkpoint_problems(
        self, path: Path, ctx: RunContext, data: dict[str, Any]
    ) -> list[Problem]:
        transformers = require_transformers()
        try:
            config = transformers.AutoConfig.from_pretrained(str(path))
        except Exception as exc:  # noqa: BLE001
            return [
                Problem(
                    "model.path",
                    str(path),
                    f"is not a transformers model folder: {exc}",
                    "give a folder with config.json (save_pretrained output)",
                )
            ]
        auto = getattr(transformers, AUTO_CLASSES[_task(ctx)])
        if type(config) not in auto._model_mapping:
            return [
                Problem(
                    "model.path",
                    str(path),
                    f"model type {config.model_type!r} has no {_task(ctx)} head in transformers",
                    "use an encoder such as BERT, RoBERTa, DistilBERT or MiniLM",
                )
            ]
        try:
            transformers.AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:  # noqa: BLE001
            return [
                Problem(
                    "model.path",
                    str(path),
                    f"has no usable tokenizer: {exc}",
                    "save the tokenizer beside the model (tokenizer.save_pretrained)",
                )
            ]
        return [] if trusted(ctx) else _pickle_problems(path)

    def needs_baseline(self, ctx: RunContext, source: Path) -> bool:
        labels = _labels(ctx)
        _, _, fresh = load_hf(source, _task(ctx), labels or None, trusted(ctx))
        if fresh:
            # "N labels" and "K tensors" side by side: "(2 new tensors)" read like 2 labels
            log.info(
                "%s has no trained head for %s; %d head tensors are new: fine-tuning a dense "
                "baseline first",
                source,
                f"these {len(labels)} labels" if labels else "this task",
                len(fresh),
            )
        return bool(fresh)

    def train_baseline(
        self, ctx: RunContext, source: Path | None, out_path: Path
    ) -> dict[str, Any]:
        """Fine-tune through `transformers.Trainer` (`baseline_arguments`: warmup, the best
        epoch by the use case's val metric, early stopping), for `baseline_epochs`."""
        if distributed.active():
            # the Trainer would wait for the other ranks, which wait for this baseline
            raise SparsifyError(
                "the dense baseline is not trained under torchrun / accelerate launch: train "
                "it once in one process (the same command without the launcher, with "
                "stages=[validate,fetch]; it is cached under cache_dir/baselines), then "
                "launch again"
            )
        from sparsify.baseline import baseline_epochs
        from sparsify.models.transformers.training import (
            TorchEngine,
            baseline_arguments,
            train_baseline_with_trainer,
        )

        transformers = require_transformers()
        task, labels = _task(ctx), _labels(ctx)
        model, tokenizer, _ = load_hf(source, task, labels or None, trusted(ctx))  # type: ignore[arg-type]
        seed = int(ctx.cfg.seed)
        torch.manual_seed(seed)
        features = _Features(
            encode_train(
                _records(ctx, "train"), tokenizer, task, labels, int(ctx.cfg.data.max_length)
            )
        )
        train = ctx.cfg.experiment.train
        epochs = baseline_epochs(ctx.cfg, len(features), int(train.batch_size))
        metric = str(ctx.cfg.use_case.metric)
        names = [
            p
            for p in inspect.signature(model.forward).parameters
            if p in tokenizer.model_input_names
        ]
        args = baseline_arguments(
            transformers,
            out_path.parent / "trainer",
            train,
            epochs,
            metric,
            seed,
            str(ctx.cfg.device) == "cpu",
        )
        log.info(
            "Training a dense baseline from %s: %g epochs at lr %g (10 %% warmup), the best "
            "epoch by val %s kept",
            source,
            epochs,
            float(train.lr),
            metric,
        )
        stats = train_baseline_with_trainer(
            transformers,
            model,
            features,
            _collator(transformers, tokenizer, task),
            lambda m: evaluate_text(TorchEngine(m, names), tokenizer, ctx),
            _records(ctx, "val"),
            args,
            int(ctx.cfg.baseline.patience),
        )
        model.save_pretrained(str(out_path))
        tokenizer.save_pretrained(str(out_path))
        shutil.rmtree(out_path.parent / "trainer", ignore_errors=True)
        return stats

    def train_sparse(
        self, model: nn.Module, ctx: RunContext, session_for: Any, teacher: nn.Module | None
    ) -> dict[str, Any]:
        """Fine-tune under the recipe session through `transformers.Trainer`."""
        from sparsify.models.transformers.training import train_with_trainer

        transformers = require_transformers()
        task, labels = _task(ctx), _labels(ctx)
        tokenizer = self._tokenizer(ctx)
        torch.manual_seed(int(ctx.cfg.seed))
        features = encode_train(
            _records(ctx, "train"), tokenizer, task, labels, int(ctx.cfg.data.max_length)
        )
        collator = _collator(transformers, tokenizer, task)
        # the Trainer runs its own DDP under torchrun; a rank other than 0 keeps its scratch
        # (and TensorBoard events) in its own folder, run_dir/ranks/rank-N/
        own = (
            ctx.stage_dir("sparsify")
            if distributed.is_main()
            else distributed.rank_dir(ctx.run_dir)
        )
        out_dir = own / "trainer"
        try:
            return train_with_trainer(
                transformers,
                model,
                _Features(features),
                collator,
                session_for,
                teacher,
                out_dir,
                ctx.cfg.experiment.train,
                int(ctx.cfg.seed),
                str(ctx.cfg.device) == "cpu",
            )
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def load_for_transfer(self, path: Path, ctx: RunContext) -> nn.Module:
        """A (pre-sparsified) model with a new head when its labels differ from the data's."""
        model, _, fresh = load_hf(path, _task(ctx), _labels(ctx) or None, trusted(ctx))
        if fresh:
            log.info("%s: %d head tensors initialised for these labels", path, len(fresh))
        return model

    def load(self, path: Path, ctx: RunContext) -> nn.Module:
        return load_hf(path, _task(ctx), trust=trusted(ctx))[0]

    def save(self, model: nn.Module, path: Path, ctx: RunContext) -> None:
        model.save_pretrained(str(path))
        tokenizer = require_transformers().AutoTokenizer.from_pretrained(
            str(ctx.artifact(ctx.output(FetchOutput).model))
        )
        tokenizer.save_pretrained(str(path))

    def _tokenizer(self, ctx: RunContext) -> Any:
        fetched = ctx.artifact(ctx.output(FetchOutput).model)
        return require_transformers().AutoTokenizer.from_pretrained(str(fetched))

    def export(self, model: nn.Module, path: Path, ctx: RunContext) -> Path:
        tokenizer = self._tokenizer(ctx)
        enc = tokenizer(["hello world"], ["a second segment"], return_tensors="pt", padding=True)
        # positional export: inputs must follow forward()'s parameter order
        names = [p for p in inspect.signature(model.forward).parameters if p in enc]
        outputs = (
            ["start_logits", "end_logits"] if _task(ctx) == "question-answering" else ["logits"]
        )
        axes = {n: {0: "batch", 1: "sequence"} for n in names}
        axes.update(
            {
                o: {0: "batch", 1: "sequence"}
                if _task(ctx) != "text-classification"
                else {0: "batch"}
                for o in outputs
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            torch.onnx.export(
                model.eval(),
                tuple(enc[n] for n in names),
                str(path),
                dynamo=False,
                opset_version=int(ctx.cfg.export.opset),
                input_names=names,
                output_names=outputs,
                dynamic_axes=axes,
            )
        import onnx

        exported = onnx.load(str(path))
        if fold_attention_scale(exported):  # the same for the baseline and every result
            onnx.save(exported, str(path))
        return path

    def calibration_feeds(self, ctx: RunContext, n: int) -> list[dict[str, np.ndarray]]:
        tokenizer = self._tokenizer(ctx)
        records = _records(ctx, "train")
        rng = np.random.default_rng(int(ctx.cfg.seed))
        picks = rng.permutation(len(records))[:n]
        max_length = int(ctx.cfg.data.max_length)
        feeds = []
        for i in picks:
            r = records[int(i)]
            if "tokens" in r:
                enc = tokenizer(
                    r["tokens"],
                    is_split_into_words=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="np",
                )
            elif "question" in r:
                enc = tokenizer(
                    r["question"],
                    r["context"],
                    truncation="only_second",
                    max_length=max_length,
                    return_tensors="np",
                )
            else:
                enc = tokenizer(
                    r["text"],
                    r.get("text_pair"),
                    truncation=True,
                    max_length=max_length,
                    return_tensors="np",
                )
            feeds.append({k: np.asarray(v, dtype=np.int64) for k, v in enc.items()})
        return feeds

    def has_labelled_split(self, ctx: RunContext, split: str) -> bool:
        if split not in ctx.output(ValidateOutput).summary.get("files", {}):
            return False
        records = _records(ctx, split)  # a test file may come without targets
        targets = ("label", "tags", "answers")  # load_split's canonical keys
        return bool(records) and all(any(k in r for k in targets) for r in records)

    def evaluate_onnx(self, engine: Any, ctx: RunContext, split: str = "val") -> dict[str, float]:
        return evaluate_text(engine, self._tokenizer(ctx), ctx, split)

    def deployment_files(self, ctx: RunContext, out_dir: Path) -> dict[str, Any]:
        tokenizer = self._tokenizer(ctx)
        tokenizer.save_pretrained(str(out_dir))
        task = _task(ctx)
        max_length = int(ctx.cfg.data.max_length)
        return {
            "preprocessing": {
                "type": "tokenizer",
                "max_length": max_length,
                "doc_stride": DOC_STRIDE,
            },
            "postprocessing": {
                "type": {
                    "text-classification": "softmax",
                    "token-classification": "bio_entities",
                    "question-answering": "best_span",
                }[task]
            },
            "labels": _labels(ctx),
        }


def evaluate_text(
    engine: Any, tokenizer: Any, ctx: RunContext, split: str = "val"
) -> dict[str, float]:
    """The use case's metric (first) and the task's others on `split`, through the code the
    deployment runs (TextRunner) on `engine`: an exported model, or a torch one in training."""
    from sparsify.data.text_features import note_split
    from sparsify.deploy.text import TextRunner
    from sparsify.models.transformers.metrics import accuracy_f1, entity_f1, squad_scores

    records = _records(ctx, split)
    if ctx.cfg.data.max_eval_samples:
        records = records[: int(ctx.cfg.data.max_eval_samples)]
    note_split(split, records, tokenizer, int(ctx.cfg.data.max_length), DOC_STRIDE)
    runner = TextRunner(
        engine, tokenizer, int(ctx.cfg.data.max_length), int(ctx.cfg.data.batch_size)
    )
    labels = _labels(ctx)
    task = _task(ctx)
    if task == "text-classification":
        pairs = [r["text_pair"] for r in records] if records and "text_pair" in records[0] else None
        probs = runner.classify([r["text"] for r in records], pairs)
        refs = [labels.index(str(r["label"])) for r in records]
        scores = accuracy_f1([int(p) for p in probs.argmax(axis=1)], refs)
    elif task == "token-classification":
        tagged = runner.tag_words([r["tokens"] for r in records])
        preds = [[labels[t] for t, _ in row] for row in tagged]
        refs = [[str(t) for t in r["tags"]] for r in records]
        scores = entity_f1(preds, refs)
    else:
        preds = [runner.answer(r["question"], r["context"], DOC_STRIDE).answer for r in records]
        scores = squad_scores(preds, [r["answers"]["text"] for r in records])
    metric = str(ctx.cfg.use_case.metric)
    first = {metric: scores[metric]} if metric in scores else {}
    return {**first, **scores, "samples": len(records)}
