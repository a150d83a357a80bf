"""The tokenizer learns through its quantizer (a stall test).

A small tokenizer with each quantizer's ``tiny``-preset settings trains for ~150 steps on fresh clips of
moving boxes (a new batch every step, so nothing can be memorized) and is scored on held-out clips.
It must beat a flat fill (each clip's mean colour) by a margin that the same model does not reach when
its bottleneck blocks learning: with the gradient stopped at the encoder's output z the decoder still
learns, from frozen random codes, and ends well below the margin (checked below, so the test cannot
pass by accident). The ``tiny`` preset's LFQ weights are part of what is tested: with the reference
auxiliary weights (commitment 0.25, entropy 0.1) this model stalls near the flat fill.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videogen.evaluation.image_metrics import psnr
from videogen.tokenizer import TokenizerConfig, VideoTokenizer
from videogen.tokenizer.config import QUANTIZERS
from videogen.tokenizer.testing import tiny_config

STEPS, BATCH, LR = 150, 8, 3e-3
MARGIN_DB = 2.5  # over the flat fill; a blocked bottleneck reaches ~0.7 dB, a learning one ~4 dB


def moving_boxes(count: int, generator: torch.Generator, frames: int = 5, size: int = 16) -> torch.Tensor:
    """``(count, 3, frames, size, size)`` in [-1, 1]: one coloured box per clip on a dark background,
    moving by up to one pixel per frame."""
    clips = torch.full((count, 3, frames, size, size), -0.8)
    for i in range(count):
        color = torch.rand(3, generator=generator) * 1.6 - 0.6
        h, w = (int(v) for v in torch.randint(4, 9, (2,), generator=generator))
        y, x = (int(v) for v in torch.randint(0, size - 8, (2,), generator=generator))
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
        for t in range(frames):
            top = min(max(y + dy * t, 0), size - h)
            left = min(max(x + dx * t, 0), size - w)
            clips[i, :, t, top : top + h, left : left + w] = color[:, None, None]
    return clips


def preset_quantizer(kind: str) -> dict:
    """``tiny_config`` overrides that give quantizer ``kind`` the ``tiny`` preset's settings (except its
    codebook size: the tiny test model keeps 64 codes)."""
    settings = {k: v for k, v in TokenizerConfig.PRESETS["tiny"].get(kind, {}).items()}
    for size_key in ("bits", "levels", "codebook_size"):
        settings.pop(size_key, None)
    return {"quantizer": kind, kind: settings}


def held_out_gain(kind: str, block_gradient: bool = False) -> float:
    """dB by which a briefly trained tokenizer beats the flat fill on held-out clips."""
    torch.manual_seed(0)
    model = VideoTokenizer(tiny_config(**preset_quantizer(kind)))
    if block_gradient:  # the deliberately broken bottleneck: no gradient reaches the encoder
        quantize = model.quantizer.forward
        model.quantizer.forward = lambda z, step=None: quantize(z.detach(), step)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    train_data = torch.Generator().manual_seed(1)
    for step in range(STEPS):
        clips = moving_boxes(BATCH, train_data)
        out = model(clips, step)
        loss = F.mse_loss(out.reconstruction, clips) + out.quantizer_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    held_out = moving_boxes(32, torch.Generator().manual_seed(99))
    with torch.no_grad():
        reconstruction = model.eval()(held_out).reconstruction.clamp(-1, 1)
    flat = held_out.mean(dim=(2, 3, 4), keepdim=True).expand_as(held_out)
    return float(psnr(reconstruction, held_out).per_sample.mean() - psnr(flat, held_out).per_sample.mean())


@pytest.mark.slow
@pytest.mark.parametrize("kind", QUANTIZERS)
def test_tokenizer_learns_through_its_quantizer(kind):
    gain = held_out_gain(kind)
    assert gain > MARGIN_DB, f"{kind}: {gain:.2f} dB over a flat fill after {STEPS} steps (stalled?)"


@pytest.mark.slow
def test_the_check_fails_when_the_bottleneck_blocks_the_gradient():
    gain = held_out_gain("lfq", block_gradient=True)
    assert gain < MARGIN_DB, (
        f"a bottleneck without encoder gradients reached {gain:.2f} dB: the check is too weak"
    )
