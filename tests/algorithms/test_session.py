"""RecipeSession: GMP schedule, masks held through training, QAT switch-on, LR, distillation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsify.algorithms.qat import wrappers
from sparsify.algorithms.schedules import sparsity_at
from sparsify.algorithms.session import RecipeSession, has_training
from sparsify.errors import SparsifyError
from sparsify.recipes.recipe import load_recipe

GMP = """
version: 1.1.0
train_stage:
  training_modifiers:
    EpochRangeModifier: {start_epoch: 0.0, end_epoch: 10.0}
    LearningRateFunctionModifier:
      {lr_func: linear, init_lr: 0.1, final_lr: 0.0, start_epoch: 0.0, end_epoch: 10.0}
  pruning_modifiers:
    GMPruningModifier:
      params: __ALL_PRUNABLE__
      init_sparsity: 0.05
      final_sparsity: 0.8
      start_epoch: 2.0
      end_epoch: 6.0
      update_frequency: 1.0
      inter_func: cubic
  quantization_modifiers:
    QuantizationModifier: {start_epoch: 8.0, freeze_observer_epoch: 9.0, freeze_bn_stats_epoch: 9.0}
  distillation_modifiers:
    DistillationModifier: {hardness: 0.75, temperature: 2.0}
"""

CONSTANT = """
version: 1.1.0
train_stage:
  training_modifiers:
    EpochRangeModifier: {start_epoch: 0.0, end_epoch: 2.0}
  pruning_modifiers:
    ConstantPruningModifier: {params: __ALL_PRUNABLE__}
"""


def recipe(tmp_path: Path, text: str):  # noqa: ANN201
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return load_recipe(str(path), {"optim_level": 0.5, "derived": {}})


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))


def sparsity(model: nn.Module) -> float:
    ws = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def train(model: nn.Module, session: RecipeSession, record: list | None = None) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for step in range(session.total_steps):
        lr = session.before_step(step)
        for group in optimizer.param_groups:
            group["lr"] = lr if lr is not None else 0.1
        x = torch.randn(16, 8)
        loss = F.cross_entropy(model(x), (x[:, 0] > 0).long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        session.after_step(step)
        if record is not None:
            record.append((session.epoch_of(step + 1), sparsity(model), lr))


def test_gmp_follows_the_cubic_schedule_and_masks_hold(tmp_path: Path) -> None:
    model = mlp()
    session = RecipeSession(recipe(tmp_path, GMP), model, steps_per_epoch=4)
    assert session.total_steps == 40
    record: list = []
    train(model, session, record)
    report = session.finish()
    by_epoch = {round(e, 4): (s, lr) for e, s, lr in record}
    for epoch in (3.0, 4.0, 5.0):
        expected = sparsity_at(epoch, 0.05, 0.8, 2.0, 6.0, "cubic")
        assert abs(by_epoch[epoch][0] - expected) < 0.01, (epoch, by_epoch[epoch][0], expected)
    assert by_epoch[1.0][0] == 0.0  # before start_epoch: dense
    # from the end epoch on every step keeps 80 %, though SGD with momentum moves weights
    assert all(abs(s - 0.8) < 0.005 for e, s, _ in record if e >= 6.0)
    assert abs(report["sparsity"] - 0.8) < 0.005
    assert by_epoch[5.0][1] == pytest.approx(0.1 * (1 - 4.75 / 10))  # LR at step 19
    assert report["qat"] and wrappers(model)
    events = [e["event"] for e in report["events"]]
    assert events.index("QAT started") < events.index("observers frozen")
    assert "BatchNorm statistics frozen" in events


def test_constant_pruning_keeps_the_pretrained_zeros(tmp_path: Path) -> None:
    model = mlp()
    with torch.no_grad():
        w = model[0].weight
        w[w.abs() < w.abs().quantile(0.7)] = 0
    zeros = model[0].weight == 0
    session = RecipeSession(recipe(tmp_path, CONSTANT), model, steps_per_epoch=5)
    train(model, session)
    session.finish()
    assert torch.equal(model[0].weight == 0, zeros)


def test_capped_run_still_reaches_the_final_sparsity(tmp_path: Path) -> None:
    model = mlp()
    session = RecipeSession(recipe(tmp_path, GMP), model, steps_per_epoch=100, max_steps=3)
    train(model, session)
    assert abs(session.finish()["sparsity"] - 0.8) < 0.005


def test_quantize_false_skips_qat(tmp_path: Path) -> None:
    model = mlp()
    session = RecipeSession(recipe(tmp_path, GMP), model, steps_per_epoch=2, quantize=False)
    train(model, session)
    assert not session.finish()["qat"] and not wrappers(model)


def test_distillation_blends_kl_with_the_label_loss(tmp_path: Path) -> None:
    session = RecipeSession(recipe(tmp_path, GMP), mlp(), steps_per_epoch=4)
    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    hard = torch.tensor(1.0)
    kl = F.kl_div(F.log_softmax(student / 2, -1), F.softmax(teacher / 2, -1), reduction="batchmean")
    expected = 0.25 * hard + 0.75 * 4 * kl
    assert torch.allclose(session.loss(hard, student, teacher), expected)
    assert torch.allclose(session.loss(student.sum(), student, student), 0.25 * student.sum())


def test_has_training_and_bad_sessions(tmp_path: Path) -> None:
    assert has_training(recipe(tmp_path, GMP))
    assert not has_training(
        load_recipe("one_shot", {"derived": {"sparsity": 0.5, "quantize": True}})
    )
    with pytest.raises(SparsifyError, match="batch"):
        RecipeSession(recipe(tmp_path, GMP), mlp(), steps_per_epoch=0)


def test_targets_the_family_ignores_name_both_ignores(tmp_path: Path) -> None:
    """A recipe whose targets all lie in the model family's ignores says so."""
    text = GMP.replace("params: __ALL_PRUNABLE__", "params: ['re:3']")
    with pytest.raises(SparsifyError, match=r"targets=\['re:3'\] \(ignore=\['3'\], the recipe's"):
        RecipeSession(recipe(tmp_path, text), mlp(), steps_per_epoch=4, default_ignore=["3"])
    session = RecipeSession(recipe(tmp_path, text), mlp(), steps_per_epoch=4)
    assert list(session.pruners[0].layers) == ["3"]
