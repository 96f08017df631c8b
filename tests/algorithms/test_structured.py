"""Structured FFN-neuron pruning: which layers pair up, masks, thinning, and the session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sparsify.algorithms.session import RecipeSession, has_training
from sparsify.algorithms.structured import (
    apply_neuron_masks,
    ffn_pairs,
    head_groups,
    kept_width,
    neuron_masks,
    set_attention_heads,
    start_statistics,
    thin,
)
from sparsify.errors import SparsifyError
from sparsify.models.transformers.family import OUTSIDE_BLOCKS
from sparsify.recipes.recipe import load_recipe

transformers = pytest.importorskip("transformers")


def tiny_bert(width: int = 64, heads: int = 2) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=heads,
        intermediate_size=width,
        max_position_embeddings=32,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def batch(n: int = 4, seq: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1, 50, (n, seq), generator=g),
        "attention_mask": torch.ones(n, seq, dtype=torch.long),
        "labels": torch.randint(0, 2, (n,), generator=g),
    }


def logits(model: nn.Module, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in feeds.items() if k != "labels"}).logits


def nested(names: list[str], shapes: dict[str, tuple[int, int]]) -> nn.Module:
    net = nn.Module()
    for name in names:
        parent = net
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, nn.Linear(*shapes[leaf]))
    return net


def test_pairs_are_each_blocks_intermediate_and_output() -> None:
    pairs = ffn_pairs(tiny_bert())
    assert [(p.up_name, p.down_name) for p in pairs] == [
        (f"bert.encoder.layer.{i}.intermediate.dense", f"bert.encoder.layer.{i}.output.dense")
        for i in range(2)
    ]
    assert all(p.width == 64 for p in pairs)


def test_pairs_of_distilbert_names_and_none_in_a_cnn() -> None:
    shapes = {"q_lin": (16, 16), "out_lin": (16, 16), "lin1": (16, 48), "lin2": (48, 16)}
    names = [f"transformer.layer.{i}.{p}" for i in range(2) for p in ("attention.q_lin",
             "attention.out_lin", "ffn.lin1", "ffn.lin2")]  # fmt: skip
    pairs = ffn_pairs(nested(names, shapes))
    assert [p.down_name for p in pairs] == [f"transformer.layer.{i}.ffn.lin2" for i in range(2)]
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 32), nn.Linear(32, 8))
    assert ffn_pairs(cnn) == []  # not inside transformer blocks


def test_a_gated_ffn_is_refused() -> None:
    shapes = {"gate_proj": (16, 48), "up_proj": (16, 48), "down_proj": (48, 16)}
    net = nested([f"model.layers.0.mlp.{p}" for p in shapes], shapes)
    with pytest.raises(SparsifyError, match="gated feed-forward"):
        ffn_pairs(net)


def test_ignore_leaves_a_block_alone() -> None:
    pairs = ffn_pairs(tiny_bert(), [r"re:.*layer\.0\..*"])
    assert [p.block for p in pairs] == ["bert.encoder.layer.1"]
    assert len(ffn_pairs(tiny_bert(), [OUTSIDE_BLOCKS])) == 2  # the family's ignore keeps them


def test_kept_width_is_aligned_and_never_zero() -> None:
    assert kept_width(1536, 0.5) == 768
    assert kept_width(1536, 0.3) == 1072  # 1075.2 rounded to a multiple of 8
    assert kept_width(64, 0.99) == 8
    assert kept_width(10, 0.99) == 1
    assert kept_width(64, 0.0) == 64


def test_masks_keep_the_same_count_per_block_by_importance() -> None:
    model = tiny_bert()
    pairs = ffn_pairs(model)
    with torch.no_grad():
        for pair in pairs:
            pair.down.weight.mul_(0.01)
            pair.down.weight[:, 10:42] *= 100.0  # neurons 10..41 matter most
    masks = neuron_masks(pairs, 0.5)
    for pair in pairs:
        keep = masks[pair.down_name]
        assert int(keep.sum()) == 32
        assert keep[10:42].all()


def test_activation_statistics_decide_between_equal_weights() -> None:
    """With equal weight norms, the neurons whose inputs are larger are kept."""
    model = tiny_bert()
    pairs = ffn_pairs(model)
    with torch.no_grad():
        for pair in pairs:
            pair.down.weight.copy_(torch.ones_like(pair.down.weight))
            pair.up.weight.copy_(torch.ones_like(pair.up.weight))
    start_statistics(pairs)
    model.train()
    for pair in pairs:
        x = torch.ones(3, 5, 64)
        x[..., :16] = 4.0
        pair.down(x)
    masks = neuron_masks(pairs, 0.75)
    for pair in pairs:
        assert masks[pair.down_name].nonzero().flatten().tolist() == list(range(16))
        assert pair.count == 0  # consumed


def test_thinning_keeps_the_outputs_and_reloads(tmp_path: Path) -> None:
    model = tiny_bert()
    feeds = batch()
    pairs = ffn_pairs(model)
    masks = neuron_masks(pairs, 0.5)
    apply_neuron_masks(pairs, masks)
    masked = logits(model, feeds)
    thin(model, pairs, masks)
    assert model.config.intermediate_size == 32
    for i in range(2):
        layer = model.bert.encoder.layer[i]
        assert layer.intermediate.dense.weight.shape == (32, 32)
        assert layer.intermediate.dense.bias.shape == (32,)
        assert layer.output.dense.weight.shape == (32, 32)
    torch.testing.assert_close(logits(model, feeds), masked, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "thin")
    again = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "thin")
    torch.testing.assert_close(logits(again, feeds), masked, atol=1e-5, rtol=1e-5)


def test_thinning_slices_the_optimizer_state() -> None:
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    model(**batch()).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    pairs = ffn_pairs(model)
    up = pairs[0].up.weight
    before = optimizer.state[up]["exp_avg"].clone()
    masks = neuron_masks(pairs, 0.5)
    thin(model, pairs, masks, optimizer)
    kept = masks[pairs[0].down_name].nonzero().flatten()
    torch.testing.assert_close(optimizer.state[up]["exp_avg"], before[kept])
    model(**batch(seed=2)).loss.backward()
    optimizer.step()  # shapes agree: no error
    assert optimizer.state[up]["exp_avg_sq"].shape == up.shape == (32, 32)


SESSION = """
version: 1.1.0
train_stage:
  training_modifiers:
    EpochRangeModifier: {{start_epoch: 0.0, end_epoch: 4.0}}
  pruning_modifiers:
    StructuredPruningModifier:
      structure: ffn_neurons
      final_sparsity: 0.5
      start_epoch: 0.0
      end_epoch: 2.0
      update_frequency: 0.5
    GMPruningModifier:
      params: __ALL_PRUNABLE__
      ignore: [{ignore}]
      final_sparsity: 0.75
      start_epoch: 1.0
      end_epoch: 3.0
      update_frequency: 0.5
      mask_type: block4
"""


def session_recipe(tmp_path: Path):  # noqa: ANN201
    path = tmp_path / "r.yaml"
    path.write_text(SESSION.format(ignore=f"'{OUTSIDE_BLOCKS}'"))
    return load_recipe(str(path), {"optim_level": 0.5, "derived": {}})


def train(session: RecipeSession, model: nn.Module, pass_optimizer: bool) -> list[int]:
    """Runs the session; the FFN width after every step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    widths = []
    for step in range(session.total_steps):
        session.before_step(step)
        model.train()
        model(**batch(seed=step)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        session.after_step(step, optimizer if pass_optimizer else None)
        up = model.bert.encoder.layer[0].intermediate.dense
        widths.append(getattr(up, "layer", up).out_features)  # through a QAT wrapper
    return widths


def test_session_masks_then_removes_neurons_and_prunes_what_is_left(tmp_path: Path) -> None:
    recipe = session_recipe(tmp_path)
    assert has_training(recipe)
    model = tiny_bert()
    session = RecipeSession(recipe, model, steps_per_epoch=4)
    widths = train(session, model, pass_optimizer=True)
    # masked (zeros) until epoch 2, then 32 of 64 neurons remain for the rest of training
    assert widths[:7] == [64] * 7 and widths[7:] == [32] * 9
    report = session.finish()
    assert report["structured"] == [
        {"structure": "ffn_neurons", "blocks": 2, "width": 64, "kept": 32, "sparsity": 0.5}
    ]
    assert model.config.intermediate_size == 32
    per_layer = report["per_layer_sparsity"]
    assert len(per_layer) == 12
    assert all(abs(v - 0.75) < 1e-6 for v in per_layer.values()), per_layer
    down = model.bert.encoder.layer[1].output.dense.weight  # block4 along the thinned columns
    blocks = (down.reshape(32, 8, 4) != 0).sum(-1)
    assert set(blocks.unique().tolist()) <= {0, 4}
    events = [e["event"] for e in report["events"]]
    assert "FFN neurons removed" in events
    assert events.index("FFN neurons removed") < len(events) - 1  # during training


def test_without_the_optimizer_removal_waits_for_finish(tmp_path: Path) -> None:
    model = tiny_bert()
    session = RecipeSession(session_recipe(tmp_path), model, steps_per_epoch=4)
    widths = train(session, model, pass_optimizer=False)
    assert set(widths) == {64}
    layer = model.bert.encoder.layer[0]
    assert int((layer.output.dense.weight.abs().sum(0) == 0).sum()) >= 32  # masked columns
    session.finish()
    assert layer.intermediate.dense.out_features == layer.output.dense.in_features == 32


def test_a_model_without_transformer_blocks_is_refused(tmp_path: Path) -> None:
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 2))
    path = tmp_path / "r.yaml"
    path.write_text(SESSION.split("    GMPruningModifier")[0].format())
    recipe = load_recipe(str(path), {"optim_level": 0.5, "derived": {}})
    assert has_training(recipe)  # structured pruning alone means training
    with pytest.raises(SparsifyError, match="no transformer feed-forward"):
        RecipeSession(recipe, cnn, steps_per_epoch=4)


def test_the_schema_names_the_structures(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(SESSION.format(ignore="x").replace("ffn_neurons", "embedding_dims"))
    with pytest.raises(SparsifyError, match="'ffn_neurons', 'attention_heads'"):
        load_recipe(str(path), {"optim_level": 0.5, "derived": {}})


def test_removal_after_qat_started_narrows_the_wrapped_layers(tmp_path: Path) -> None:
    """QAT wraps the Linear layers before the structured window ends: the wrapped layers are
    narrowed in place and the fake-quantized model still trains and runs."""
    from sparsify.algorithms.qat import wrappers

    path = tmp_path / "r.yaml"
    text = SESSION.format(ignore=f"'{OUTSIDE_BLOCKS}'") + (
        "  quantization_modifiers:\n    QuantizationModifier: {start_epoch: 1.0}\n"
    )
    path.write_text(text)
    recipe = load_recipe(str(path), {"optim_level": 0.5, "derived": {}})
    model = tiny_bert()
    session = RecipeSession(recipe, model, steps_per_epoch=4)
    widths = train(session, model, pass_optimizer=True)
    assert widths[-1] == 32
    wrapped = wrappers(model)
    down = "bert.encoder.layer.0.output.dense"
    assert down in wrapped and wrapped[down].layer.in_features == 32
    assert session.finish()["structured"][0]["kept"] == 32
    assert torch.isfinite(logits(model, batch())).all()


def test_head_groups_are_each_blocks_self_attention() -> None:
    groups = head_groups(tiny_bert(heads=4))
    prefix = "bert.encoder.layer.{}.attention"
    assert [(g.up_name, g.down_name) for g in groups] == [
        (prefix.format(i) + ".self.value", prefix.format(i) + ".output.dense") for i in range(2)
    ]
    assert all((g.unit, g.units, g.width, len(g.rows)) == (8, 4, 32, 3) for g in groups)
    assert [g.block for g in head_groups(tiny_bert(), [r"re:.*layer\.0\..*"])] == [
        "bert.encoder.layer.1"
    ]
    assert head_groups(nn.Sequential(nn.Linear(4, 4))) == []


def test_head_masks_keep_whole_heads_by_importance() -> None:
    model = tiny_bert(heads=4)
    groups = head_groups(model)
    with torch.no_grad():
        for group in groups:
            group.down.weight.mul_(0.01)
            group.down.weight[:, 16:24] *= 100.0  # head 2 matters most
    masks = neuron_masks(groups, 0.7)  # 4 heads -> 1
    for group in groups:
        assert masks[group.down_name].nonzero().flatten().tolist() == list(range(16, 24))
    assert kept_width(12, 0.5, unit=32) == 6  # heads are not rounded to ALIGN
    assert kept_width(12, 0.99, unit=32) == 1


def test_removing_heads_keeps_the_outputs_and_reloads(tmp_path: Path) -> None:
    from sparsify.models.transformers.family import load_hf

    model = tiny_bert(heads=4)
    feeds = batch()
    groups = head_groups(model)
    masks = neuron_masks(groups, 0.5)
    apply_neuron_masks(groups, masks)
    masked = logits(model, feeds)
    thin(model, groups, masks)
    attention = model.bert.encoder.layer[1].attention
    assert attention.self.query.weight.shape == attention.self.key.weight.shape == (16, 32)
    assert attention.self.value.bias.shape == (16,)
    assert attention.output.dense.weight.shape == (32, 16)
    assert attention.self.num_attention_heads == 2 and attention.self.all_head_size == 16
    assert model.config.sparsify_attention_heads == 2 and model.config.num_attention_heads == 4
    torch.testing.assert_close(logits(model, feeds), masked, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "thin")
    _tokenizer(tmp_path / "thin")  # load_hf reads a tokenizer too
    again, _, fresh = load_hf(tmp_path / "thin", "text-classification")
    assert fresh == []
    torch.testing.assert_close(logits(again, feeds), masked, atol=1e-5, rtol=1e-5)
    # a head for other labels is fresh, as with from_pretrained(ignore_mismatched_sizes)
    _, _, fresh = load_hf(tmp_path / "thin", "text-classification", ["a", "b", "c"])
    assert sorted(fresh) == ["classifier.bias", "classifier.weight"]
    config = tmp_path / "thin" / "config.json"
    config.write_text(
        config.read_text().replace('"sparsify_attention_heads": 2', '"sparsify_attention_heads": 1')
    )
    with pytest.raises(SparsifyError, match="do not fit a model with 1 attention heads"):
        load_hf(tmp_path / "thin", "text-classification")


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{f"w{i}": i for i in range(4, 50)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]",
    )  # fmt: skip
    fast.save_pretrained(folder)


def test_set_attention_heads_refuses_what_does_not_fit() -> None:
    with pytest.raises(SparsifyError, match="has 2 heads"):
        set_attention_heads(tiny_bert(), 3)
    with pytest.raises(SparsifyError, match="no BERT-style self-attention"):
        set_attention_heads(nn.Sequential(nn.Linear(4, 4)), 1)


def test_session_removes_heads(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        SESSION.format(ignore=f"'{OUTSIDE_BLOCKS}'").replace("ffn_neurons", "attention_heads")
    )
    recipe = load_recipe(str(path), {"optim_level": 0.5, "derived": {}})
    model = tiny_bert(heads=4)
    session = RecipeSession(recipe, model, steps_per_epoch=4)
    train(session, model, pass_optimizer=True)
    report = session.finish()
    assert report["structured"] == [
        {"structure": "attention_heads", "blocks": 2, "width": 4, "kept": 2, "sparsity": 0.5}
    ]
    events = [e["event"] for e in report["events"]]
    assert "attention heads masked" in events and "attention heads removed" in events
    query = model.bert.encoder.layer[0].attention.self.query
    assert getattr(query, "layer", query).weight.shape == (16, 32)
    # block4 masks of the GMP pruner were sliced and re-chosen on the thinned shapes
    assert all(abs(v - 0.75) < 1e-6 for v in report["per_layer_sparsity"].values())
    assert torch.isfinite(logits(model, batch())).all()


def test_a_model_without_bert_attention_is_refused_for_heads(tmp_path: Path) -> None:
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 2))
    path = tmp_path / "r.yaml"
    text = SESSION.split("    GMPruningModifier")[0].format()
    path.write_text(text.replace("ffn_neurons", "attention_heads"))
    recipe = load_recipe(str(path), {"optim_level": 0.5, "derived": {}})
    with pytest.raises(SparsifyError, match="no BERT-style self-attention"):
        RecipeSession(recipe, cnn, steps_per_epoch=4)
