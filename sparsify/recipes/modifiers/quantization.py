"""QuantizationModifier: INT8. Post-training, it names what the quantizer leaves alone;
while training, it switches QAT on at `start_epoch` and freezes observers and BatchNorm
statistics later (`sparsify.algorithms.qat`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparsify.algorithms.qat import freeze_batchnorm, freeze_observers, prepare_qat
from sparsify.recipes.modifiers.base import Modifier, register
from sparsify.recipes.modifiers.fields import BOOL, END, EPOCH, IGNORE, SCHEME, START, spec, state

if TYPE_CHECKING:
    from sparsify.algorithms.session import RecipeSession

log = logging.getLogger("sparsify")


@register
@dataclass(kw_only=True)
class QuantizationModifier(Modifier):
    group = "quantization_modifiers"
    aliases = {"disable_quantization_observer_epoch": "freeze_observer_epoch"}

    enabled: bool = spec(BOOL, True)
    ignore: list[str] = spec(IGNORE, factory=list)
    start_epoch: float | None = spec(START)
    end_epoch: float | None = spec(END)
    freeze_observer_epoch: float | None = spec(EPOCH)
    freeze_bn_stats_epoch: float | None = spec(EPOCH)
    scheme: dict[str, Any] = spec(SCHEME, factory=dict)

    observers_frozen: bool = state(bool)
    bn_frozen: bool = state(bool)

    def initialize(self, session: RecipeSession) -> bool:
        self.observers_frozen = self.bn_frozen = False
        return bool(self.enabled) and session.quantize

    def before_step(self, session: RecipeSession, step: int) -> None:
        # events start in the step whose span reaches their epoch, so a short (capped) run
        # still passes through every phase
        epoch = session.epoch_of(step + 1) - 1e-6
        start = float(self.start_epoch or 0.0)
        if not session.qat_started and epoch >= start - 1e-9:
            self._start_qat(session, epoch)
        freeze_obs = self.freeze_observer_epoch
        if (
            session.qat_started
            and not self.observers_frozen
            and freeze_obs is not None
            and epoch >= float(freeze_obs)
        ):
            session.event(epoch, "observers frozen", count=freeze_observers(session.model))
            self.observers_frozen = True
        freeze_bn = self.freeze_bn_stats_epoch
        if not self.bn_frozen and freeze_bn is not None and epoch >= float(freeze_bn):
            session.event(
                epoch, "BatchNorm statistics frozen", count=freeze_batchnorm(session.model)
            )
            self.bn_frozen = True

    def _start_qat(self, session: RecipeSession, epoch: float) -> None:
        scheme = self.scheme or {}
        per_channel = (scheme.get("weights") or {}).get("strategy", "channel") == "channel"
        if session.per_channel is not None and session.per_channel != per_channel:
            log.info(
                "QAT weights %s, as the deployed INT8 format (the recipe says %s)",
                "per channel" if session.per_channel else "per tensor",
                "per channel" if per_channel else "per tensor",
            )
            per_channel = session.per_channel
        ignore = [*(self.ignore or []), *session.qat_ignore]
        wrapped = prepare_qat(session.model, ignore, per_channel)
        session.qat_started = True
        session.event(epoch, "QAT started", layers=len(wrapped))
