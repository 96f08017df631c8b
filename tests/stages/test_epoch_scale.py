"""One epoch scale in a training log: the recipe's. The schedule is stated once (epochs, steps,
steps an epoch, passes when experiment.train.max_steps squeezes it), and the Hugging Face
Trainer's logged `epoch` is the recipe's, not its count of passes over the data
(sparsify/stages/sparsify_stage.py, sparsify/models/transformers/training.py)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparsify
from sparsify.algorithms.session import RecipeSession
from sparsify.recipes.recipe import load_recipe
from sparsify.stages.sparsify_stage import schedule_line

RECIPE = """
version: 1.1.0
train_stage:
  training_modifiers:
    EpochRangeModifier: {start_epoch: 0.0, end_epoch: 10.0}
  pruning_modifiers:
    GMPruningModifier:
      params: __ALL_PRUNABLE__
      init_sparsity: 0.05
      final_sparsity: 0.5
      start_epoch: 0.0
      end_epoch: 8.0
      update_frequency: 1.0
"""


class Tiny(nn.Module):
    """A classifier with the Trainer's interface: keyword inputs, an output with `.loss`."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> Any:
        logits = self.fc(x)
        return SimpleNamespace(loss=F.cross_entropy(logits, labels), logits=logits)


def _recipe(tmp_path: Path) -> Any:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return load_recipe(str(path), {})


def _session(tmp_path: Path, steps_per_epoch: int, max_steps: int | None) -> RecipeSession:
    return RecipeSession(_recipe(tmp_path), Tiny(), steps_per_epoch, max_steps=max_steps)


def test_schedule_line_states_epochs_steps_and_passes(tmp_path: Path) -> None:
    # the run: the recipe's 10 epochs in 60 steps of a 47-step pass
    squeezed = schedule_line("r.yaml", _session(tmp_path, 47, 60))
    assert squeezed == (
        "Training under recipe r.yaml: 10.00 epochs in 60 steps: experiment.train.max_steps "
        "squeezes them to 6.00 steps an epoch, 1.28 passes over the train data (47 steps a "
        "pass); epochs in the log are the recipe's"
    )
    full = schedule_line("r.yaml", _session(tmp_path, 47, None))
    assert full == (
        "Training under recipe r.yaml: 10.00 epochs in 470 steps (47 steps an epoch, one pass "
        "over the train data)"
    )
    # a cap above the schedule does not squeeze it
    assert schedule_line("r.yaml", _session(tmp_path, 47, 1000)) == full


def test_trainer_logs_the_recipes_epochs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """12 examples at batch 4 = 3 steps a pass; 10 recipe epochs squeezed into 8 steps: the
    Trainer's own count would end at 2.67 epochs, the log must end at the recipe's 10.0."""
    transformers = pytest.importorskip("transformers")
    from sparsify.models.transformers.training import train_with_trainer

    generator = torch.Generator().manual_seed(0)
    dataset = [
        {"x": torch.randn(8, generator=generator), "labels": torch.tensor(i % 2)} for i in range(12)
    ]
    model, recipe = Tiny(), _recipe(tmp_path)
    sessions: list[RecipeSession] = []

    def session_for(steps_per_epoch: int) -> RecipeSession:
        sessions.append(RecipeSession(recipe, model, steps_per_epoch, max_steps=8))
        return sessions[-1]

    train_cfg = SimpleNamespace(batch_size=4, lr=0.01, weight_decay=0.0)
    with caplog.at_level(logging.DEBUG, logger="sparsify"):
        train_with_trainer(
            transformers,
            model,
            dataset,
            transformers.default_data_collator,
            session_for,
            None,
            tmp_path / "sparsify" / "trainer",
            train_cfg,
            seed=0,
            use_cpu=True,
        )
    assert sessions[0].steps_per_epoch == 3 and sessions[0].total_steps == 8
    logged = [
        float(m.group(1))
        for r in caplog.records
        if r.getMessage().startswith("Trainer: ")
        for m in [re.search(r"'epoch': ([0-9.]+)", r.getMessage())]
        if m
    ]
    # every 3 steps (a pass) and the final summary: the recipe's epochs of steps 3, 6 and 8,
    # not the Trainer's passes 1.0, 2.0 and 2.67
    assert logged == [3.75, 7.5, 10.0]


@pytest.mark.slow
def test_a_training_run_states_its_schedule_once(tiny_run: list[str]) -> None:
    result = sparsify.run(
        [*tiny_run, "experiment=training_aware", "stages=[validate,fetch,sparsify]"]
    )
    assert result.status == "done", result.error
    log = (result.run_dir / "run.log").read_text(encoding="utf-8")
    lines = [line for line in log.splitlines() if "Training under recipe" in line]
    assert len(lines) == 1, lines
    # tiny_run: 24 train images at batch 8 = 3 steps a pass, max_steps 6
    assert "epochs in 6 steps: experiment.train.max_steps squeezes them" in lines[0]
    assert "(3 steps a pass)" in lines[0]
