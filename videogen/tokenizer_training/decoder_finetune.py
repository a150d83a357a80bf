"""Stage 2 of a tokenizer run: the decoder alone, on whole frames, with the tokens fixed.

Stage 1 trains encoder, quantizer and decoder together on cheap crops. For the last
``decoder_finetune.fraction`` of ``train.max_steps`` (VidTok's second stage, MaskBit's decoder fine-tune):

* the encoder and the quantizer take their EMA weights (the weights the export would have) and stop
  learning: their optimizer groups get learning rate 0 and they run without autograd, so their
  backward is not paid for and the token ids of a clip no longer change;
* the decoder keeps its optimizer state and schedule and fits those fixed tokens on whole frames,
  where its GroupNorms see the statistics they see at inference (stage 1's 32x32 crops do not).

The generator's optimizer groups are ordered decoder first, then encoder + quantizer
(:func:`generator_param_groups`), so the frozen groups are known by index under DeepSpeed, whose ZeRO
optimizers hold flattened copies of the parameters. Freezing is re-applied at every stage-2 step, so a
run resumed inside stage 2 (whose checkpoint restored the scheduler's learning rates) stays frozen.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from videogen.tokenizer import VideoTokenizer
from videogen.training.deepspeed_engine import default_param_groups
from videogen.training.ema import EMA

FROZEN_PREFIXES = ("encoder.", "quantizer.")  # state-dict keys of what stage 2 freezes


def generator_param_groups(
    model: VideoTokenizer, weight_decay: float
) -> tuple[list[dict[str, Any]], list[int]]:
    """Optimizer groups of the tokenizer, decoder first; returns ``(groups, indices of the frozen groups)``."""
    decoder = default_param_groups(model.decoder, weight_decay)
    frozen = default_param_groups(nn.ModuleList([model.encoder, model.quantizer]), weight_decay)
    return decoder + frozen, list(range(len(decoder), len(decoder) + len(frozen)))


class EncoderFreeze:
    """``in_stage_two(step)``: True from step ``first_step`` on, after making sure the encoder is frozen."""

    def __init__(self, engine: Any, ema: EMA | None, first_step: int, frozen_groups: list[int]) -> None:
        self.engine = engine
        self.ema = ema
        self.first_step = first_step
        self.frozen_groups = frozen_groups

    def in_stage_two(self, step: int) -> bool:
        if step < self.first_step:  # (a finished run resumed with a larger train.max_steps trains all again)
            self._set_learning_rates(self.engine.lr_scheduler.base_lrs[0])
            return False
        if (
            step == self.first_step
        ):  # the first stage-2 step (also when resumed from the checkpoint before it)
            self._take_ema_weights()
        self._set_learning_rates(0.0)
        return True

    @torch.no_grad()
    def _take_ema_weights(self) -> None:
        """Encoder and quantizer weights <- their EMA (the DeepSpeed optimizer's fp32 copies too)."""
        if self.ema is None:
            return
        state = self.engine.module.state_dict()
        for name, value in self.ema.state_dict().items():
            if name.startswith(FROZEN_PREFIXES):
                state[name].copy_(value.to(state[name].device, state[name].dtype))
                value.copy_(state[name])  # a bf16 module rounds them: the EMA takes the rounded weights too,
                # so it stays equal to the frozen weights (and the export encodes as the decoder was trained)
        refresh = getattr(self.engine.optimizer, "refresh_fp32_params", None)
        if refresh is not None:
            refresh()

    def _set_learning_rates(self, base_lr: float) -> None:
        """The frozen groups' peak lr (LambdaLR: lr = base_lr * factor(step)); group 0 is the decoder's."""
        scheduler = self.engine.lr_scheduler
        groups = self.engine.optimizer.param_groups
        for index in self.frozen_groups:
            if scheduler.base_lrs[index] != base_lr:
                scheduler.base_lrs[index] = base_lr
                groups[index]["lr"] = groups[0]["lr"] if base_lr else 0.0


class StagedBatches:
    """Batches of the stage-1 loader until ``trainer.step`` reaches ``first_step``, then of stage 2's.

    An iterable that :meth:`Trainer.fit` iterates again whenever a pass ends: a pass of stage 1 ends at
    the switch (mid-epoch: its sampler's position is what a checkpoint keeps), the next passes are stage 2's.
    """

    def __init__(self, trainer: Any, stage_one: Iterable, stage_two: Iterable, first_step: int) -> None:
        self.trainer = trainer
        self.stage_one = stage_one
        self.stage_two = stage_two
        self.first_step = first_step

    def __iter__(self) -> Iterator[Any]:
        if self.trainer.step >= self.first_step:
            yield from self.stage_two
            return
        batches = iter(self.stage_one)
        try:
            while self.trainer.step < self.first_step:
                try:
                    yield next(batches)
                except StopIteration:
                    return
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
