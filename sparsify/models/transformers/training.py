"""Training under a recipe with `transformers.Trainer`: our session as callback + loss.

The Trainer keeps its optimizer and loop; a `TrainerCallback` hands each step to the
`RecipeSession` (learning rate before the step, masks after the optimizer step) and
`compute_loss` blends in distillation from the dense teacher.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsify import distributed
from sparsify.algorithms.session import RecipeSession
from sparsify.eta import StepTimer
from sparsify.models.tensorboard import EventLog

log = logging.getLogger("sparsify")


def _logits(outputs: Any) -> list[torch.Tensor]:
    """The outputs to distil: start/end logits for QA, else the logits."""
    if getattr(outputs, "start_logits", None) is not None:
        return [outputs.start_logits, outputs.end_logits]
    return [outputs.logits]


def quiet_printer(transformers: Any, trainer: Any) -> None:
    """The Trainer's PrinterCallback prints every log dict to stdout (with its bar off): they
    are logged at DEBUG instead, which a run writes to run.log only (`--verbose` shows them)."""
    trainer.remove_callback(transformers.PrinterCallback)

    class LogToFile(transformers.TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and state.is_world_process_zero:
                log.debug("Trainer: %s", logs)

    trainer.add_callback(LogToFile())


def eta_callback(transformers: Any, what: str) -> Any:
    """A TrainerCallback that logs the estimated time of the whole run after its first steps,
    then the time left now and then (the Trainer's own bar is off: disable_tqdm)."""

    class EtaCallback(transformers.TrainerCallback):
        timer = StepTimer(what)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.timer.total = int(state.max_steps)  # known once the Trainer sized the run

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.timer.step()

    return EtaCallback()


def train_with_trainer(
    transformers: Any,
    model: nn.Module,
    dataset: Any,
    collator: Any,
    session_for: Any,
    teacher: nn.Module | None,
    out_dir: Path,
    train_cfg: Any,
    seed: int,
    use_cpu: bool,
) -> dict[str, Any]:
    batch_size = int(train_cfg.batch_size)
    # under torchrun the Trainer (accelerate) gives each rank its share of every epoch: the
    # recipe's epochs count the steps of one rank
    per_step = batch_size * distributed.world_size()
    steps_per_epoch = max(1, math.ceil(len(dataset) / per_step))
    # the session states the schedule (the recipe's epochs, its steps, the passes)
    session: RecipeSession = session_for(steps_per_epoch)
    events = EventLog(out_dir.parent / "tensorboard")
    if teacher is not None:
        teacher.eval()

    class SessionCallback(transformers.TrainerCallback):
        lr: float | None = None  # what the recipe set for the last step

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            lr = session.before_step(int(state.global_step))
            optimizer = kw.get("optimizer")
            if lr is not None and optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                self.lr = float(lr)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            # global_step already counts this step; the optimizer lets thinning slice its state
            session.after_step(int(state.global_step) - 1, kw.get("optimizer"))
            events.scalars(int(state.global_step), sparsity=session.sparsity)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any
        ) -> None:
            if logs is not None and "learning_rate" in logs and self.lr is not None:
                # the Trainer's constant scheduler resets the optimizer after every step; the
                # recipe's rate is what the step ran with
                logs["learning_rate"] = self.lr
            if logs is not None and "epoch" in logs:
                # the Trainer counts passes over the data; a recipe squeezed into max_steps
                # runs its epochs faster: one epoch scale in the log, the recipe's (as the
                # schedule line and the modifiers' events state it)
                logs["epoch"] = round(session.epoch_of(int(state.global_step)), 3)
            numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float)}
            events.scalars(int(state.global_step), **numbers)

    class SessionTrainer(transformers.Trainer):
        def compute_loss(
            self,
            model: nn.Module,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            outputs = model(**inputs)
            loss = outputs.loss
            if teacher is not None:
                feeds = {k: v for k, v in inputs.items() if k not in ("labels",)}
                feeds = {
                    k: v for k, v in feeds.items() if k not in ("start_positions", "end_positions")
                }
                with torch.no_grad():
                    target = teacher(**feeds)
                pairs = list(zip(_logits(outputs), _logits(target), strict=True))
                step = int(self.state.global_step)
                loss = sum(session.loss(loss, s, t, step) for s, t in pairs) / len(pairs)
            return (loss, outputs) if return_outputs else loss

    args = transformers.TrainingArguments(
        output_dir=str(out_dir),
        max_steps=session.total_steps,
        learning_rate=float(train_cfg.lr),
        lr_scheduler_type="constant",  # the recipe's LearningRateFunctionModifier rules
        per_device_train_batch_size=batch_size,
        weight_decay=float(train_cfg.weight_decay),
        save_strategy="no",
        report_to=[],
        logging_steps=max(1, steps_per_epoch),
        use_cpu=use_cpu,
        seed=seed,
        disable_tqdm=True,
    )
    trainer = SessionTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
    )
    # first, so the Trainer's printer and loggers see the learning rate the recipe set
    trainer.callback_handler.callbacks.insert(0, SessionCallback())
    trainer.add_callback(eta_callback(transformers, "training under the recipe"))
    quiet_printer(transformers, trainer)
    try:
        stats = trainer.train()
    finally:
        events.close()
    model.eval()
    report = session.finish()
    return {**report, "loss": round(float(stats.training_loss), 5)}


# -- the dense baseline ---------------------------------------------------------------------


class TorchEngine:
    """A torch model behind the engine interface (`run(feeds)`, `input_names`), so the val
    metric during training is computed by the code that scores the exported models."""

    name = "torch"

    def __init__(self, model: nn.Module, input_names: list[str]) -> None:
        self.model = model
        self.input_names = input_names

    @torch.no_grad()
    def run(self, feeds: dict[str, Any]) -> list[Any]:
        device = next(self.model.parameters()).device
        outputs = self.model(**{k: torch.as_tensor(v, device=device) for k, v in feeds.items()})
        return [t.float().cpu().numpy() for t in _logits(outputs)]


def baseline_arguments(
    transformers: Any,
    out_dir: Path,
    train_cfg: Any,
    epochs: float,
    metric: str,
    seed: int,
    use_cpu: bool,
) -> Any:
    """TrainingArguments of the dense baseline: Hugging Face's fine-tuning recipe (linear decay
    after a 10 % warmup, at experiment.train.lr: 5e-5 for the NLP use cases) for `epochs`
    (`baseline_epochs`), the val metric measured after every epoch and the best epoch's
    weights kept (`metric_for_best_model`: the use case's metric, not the loss)."""
    return transformers.TrainingArguments(
        output_dir=str(out_dir),
        num_train_epochs=float(epochs),
        learning_rate=float(train_cfg.lr),
        lr_scheduler_type="linear",
        warmup_steps=0.1,  # below 1: a fraction of the steps (transformers 5)
        per_device_train_batch_size=int(train_cfg.batch_size),
        weight_decay=float(train_cfg.weight_decay),
        max_steps=int(train_cfg.max_steps or -1),
        eval_strategy="epoch",
        save_strategy="best",  # a checkpoint only when the val metric improves
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=True,  # every use case metric: accuracy, F1, entity F1
        report_to=[],
        logging_steps=10,
        use_cpu=use_cpu,
        seed=seed,
        disable_tqdm=True,
    )


def train_baseline_with_trainer(
    transformers: Any,
    model: nn.Module,
    dataset: Any,
    collator: Any,
    evaluate: Any,
    val: Any,
    args: Any,
    patience: int,
) -> dict[str, Any]:
    """Fine-tune the dense baseline; `evaluate(model)` returns the metrics on `val` (the use
    case's metric among them) after every epoch. Stops after `patience` epochs without a better val
    metric and returns with the best epoch's weights loaded."""

    class BaselineTrainer(transformers.Trainer):
        def evaluate(
            self,
            eval_dataset: Any = None,
            ignore_keys: Any = None,
            metric_key_prefix: str = "eval",
        ) -> dict[str, float]:
            # QA needs answer spans, NER word-level entities: what evaluate_text computes
            training = self.model.training
            scores = evaluate(self.model.eval())
            self.model.train(training)
            metrics = {
                f"{metric_key_prefix}_{k}": float(v) for k, v in scores.items() if k != "samples"
            }
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(
                self.args, self.state, self.control, metrics
            )
            return metrics

    trainer = BaselineTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=val,  # the val records; `evaluate` scores them through the deployed code
        data_collator=collator,
        callbacks=[
            transformers.EarlyStoppingCallback(early_stopping_patience=max(1, patience)),
            eta_callback(transformers, "dense baseline fine-tune"),
        ],
    )
    quiet_printer(transformers, trainer)
    stats = trainer.train()
    best = trainer.state.best_metric
    if best is None:  # stopped (max_steps) before an epoch ended: measure what there is
        best = float(trainer.evaluate()[f"eval_{args.metric_for_best_model}"])
    else:
        log.info(
            "Kept the best epoch's weights (val %s %.2f)", args.metric_for_best_model, float(best)
        )
    model.eval()
    return {
        "steps": int(stats.global_step),
        "loss": round(float(stats.training_loss), 5),
        "epochs": round(float(trainer.state.epoch or 0.0), 3),
        f"val_{args.metric_for_best_model}": round(float(best), 4),
    }
