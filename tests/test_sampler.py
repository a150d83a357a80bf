"""Sampler: schedule counts, known tokens, COMMIT refill, distribution, CFG, determinism, cost."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videogen.transformer import MASK_ID, CommitTransformer, TokenLogits, sample
from videogen.transformer.mask_schedules import scheduled_mask_counts
from videogen.transformer.sampler import guidance_at
from videogen.transformer.vocab import TASK_IDS, UNCOND_TASK_ID

GRID = (3, 5, 4, 4)  # B, T', H', W' -> N = 80
FP = TASK_IDS["frame_prediction"]


class StubModel(nn.Module):
    """Returns the same logits at every position (``cond`` rows) or ``uncond`` for the CFG twin."""

    uncond_class_id = 7

    def __init__(self, cond: list[torch.Tensor], uncond: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.cond, self.uncond = cond, uncond or cond
        self.sizes = tuple(int(c.numel()) for c in cond)
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, tokens: torch.Tensor, task_ids: torch.Tensor, class_ids: torch.Tensor) -> TokenLogits:
        self.calls.append((tokens.clone(), task_ids.clone(), class_ids.clone()))
        batch, num = tokens.shape[0], tokens[0].numel()
        twin = (task_ids == UNCOND_TASK_ID).view(-1, 1, 1)
        parts = tuple(
            torch.where(twin, u.expand(batch, num, -1), c.expand(batch, num, -1))
            for c, u in zip(self.cond, self.uncond)
        )
        return TokenLogits(parts, self.sizes)


def condition(
    seed: int = 0, grid: tuple[int, ...] = GRID, codes: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cond_tokens = torch.randint(0, codes, grid, generator=g)
    cond_mask = torch.zeros(grid, dtype=torch.bool)
    cond_mask[:, 0] = True  # first latent frame
    cond_mask[1, :, 0] = True  # plus a row band on sample 1
    return cond_tokens, cond_mask


def prefix(batch: int = GRID[0]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((batch,), FP), torch.arange(batch)


def random_stub(seed: int = 0, bits: tuple[int, ...] = (4,)) -> StubModel:
    g = torch.Generator().manual_seed(seed)
    return StubModel([torch.randn(2**b, generator=g) for b in bits])


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


# ----------------------------------------------------------------------------- the decoding loop


@pytest.mark.parametrize("schedule", ["cosine", "linear", "exp"])
@pytest.mark.parametrize("keep_condition", ["regenerate", "fixed"])
def test_decoding_invariants(schedule: str, keep_condition: str) -> None:
    cond_tokens, cond_mask = condition()
    model = random_stub()
    tasks, classes = prefix()
    out, history = sample(
        model,
        cond_tokens,
        cond_mask,
        tasks,
        classes,
        schedule=schedule,
        keep_condition=keep_condition,
        generator=torch.Generator().manual_seed(0),
        return_history=True,
    )
    batch = GRID[0]
    flat_cond, flat_mask = cond_tokens.view(batch, -1), cond_mask.view(batch, -1)
    fixed = flat_mask if keep_condition == "fixed" else torch.zeros_like(flat_mask)
    counts = scheduled_mask_counts((~fixed).sum(1), 12, schedule)
    assert len(history) == len(model.calls) == 12
    # step 0 input: condition tokens in the condition region, [MASK] elsewhere
    first = history[0].inputs.view(batch, -1)
    assert torch.equal(first, torch.where(flat_mask, flat_cond, MASK_ID))
    known = fixed.clone()
    known_values = torch.where(fixed, flat_cond, MASK_ID)
    for t, step in enumerate(history):
        masked, sampled = step.masked.view(batch, -1), step.sampled.view(batch, -1)
        assert masked.sum(1).tolist() == counts[t].tolist()  # exactly the scheduled count left
        assert torch.equal(sampled[known], known_values[known])  # known tokens never change
        assert not (masked & known).any()  # ... and are never re-masked
        newly = ~masked & ~known
        assert newly.sum(1).min() >= 1  # at least one token fixed per step
        known, known_values = ~masked, torch.where(~masked, sampled, known_values)
        if t + 1 < len(history):  # COMMIT refill: re-masked condition positions get condition tokens again
            nxt = history[t + 1].inputs.view(batch, -1)
            assert torch.equal(nxt[masked & flat_mask], flat_cond[masked & flat_mask])
            assert (nxt[masked & ~flat_mask] == MASK_ID).all()
            assert torch.equal(nxt[~masked], sampled[~masked])
    assert (out != MASK_ID).all() and out.min() >= 0 and out.max() < 16
    assert torch.equal(out.view(batch, -1), known_values) and known.all()
    if keep_condition == "fixed":
        assert torch.equal(out[cond_mask], cond_tokens[cond_mask])


def test_deterministic_for_a_seed_and_restores_training_mode() -> None:
    cond_tokens, cond_mask = condition()
    tasks, classes = prefix()
    model = random_stub().train()
    a = sample(model, cond_tokens, cond_mask, tasks, classes, generator=torch.Generator().manual_seed(3))
    b = sample(model, cond_tokens, cond_mask, tasks, classes, generator=torch.Generator().manual_seed(3))
    c = sample(model, cond_tokens, cond_mask, tasks, classes, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training


def test_one_step_samples_follow_the_model_distribution() -> None:
    """A fixed distribution, decoded in one step: every position is a plain draw from it."""
    probs = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.015, 0.005])
    model = StubModel([probs.log()])
    grid = (50, 5, 4, 4)  # 4000 draws
    cond_tokens, cond_mask = torch.zeros(grid, dtype=torch.long), torch.zeros(grid, dtype=torch.bool)
    tasks, classes = prefix(50)
    out = sample(
        model, cond_tokens, cond_mask, tasks, classes, steps=1, generator=torch.Generator().manual_seed(0)
    )
    counts = torch.bincount(out.flatten(), minlength=8).float()
    assert chi_square(counts, probs) < 24.3  # chi2(7 dof) 0.999 quantile
    # temperature 2 and top-k 3 change the distribution as documented
    hot = sample(
        model,
        cond_tokens,
        cond_mask,
        tasks,
        classes,
        steps=1,
        temperature=2.0,
        generator=torch.Generator().manual_seed(1),
    )
    assert (
        chi_square(torch.bincount(hot.flatten(), minlength=8).float(), torch.softmax(probs.log() / 2, 0))
        < 24.3
    )
    top = sample(
        model,
        cond_tokens,
        cond_mask,
        tasks,
        classes,
        steps=1,
        top_k=3,
        generator=torch.Generator().manual_seed(2),
    )
    assert top.max() == 2
    assert chi_square(torch.bincount(top.flatten(), minlength=3).float(), probs[:3] / probs[:3].sum()) < 13.8


def test_split_vocab_samples_follow_the_product_distribution() -> None:
    """Two sub-token heads (bits 2 + 2), 12 steps: uniform heads give uniform codes whatever the order."""
    model = StubModel([torch.zeros(4), torch.zeros(4)])
    grid = (50, 5, 4, 4)
    cond_tokens, cond_mask = torch.zeros(grid, dtype=torch.long), torch.zeros(grid, dtype=torch.bool)
    tasks, classes = prefix(50)
    out = sample(model, cond_tokens, cond_mask, tasks, classes, generator=torch.Generator().manual_seed(5))
    counts = torch.bincount(out.flatten(), minlength=16).float()
    assert counts.numel() == 16 and chi_square(counts, torch.full((16,), 1 / 16)) < 37.7  # chi2(15) 0.999
    skewed = StubModel([torch.tensor([0.7, 0.1, 0.1, 0.1]).log(), torch.tensor([0.5, 0.5, 0.0, 0.0]).log()])
    one = sample(
        skewed, cond_tokens, cond_mask, tasks, classes, steps=1, generator=torch.Generator().manual_seed(6)
    )
    joint = (torch.tensor([0.7, 0.1, 0.1, 0.1]).view(1, 4) * torch.tensor([0.5, 0.5]).view(2, 1)).flatten()
    assert one.max() < 8  # high sub-token never 2 or 3
    assert chi_square(torch.bincount(one.flatten(), minlength=8).float(), joint) < 24.3


# ----------------------------------------------------------------------------- guidance


def test_guidance_twin_and_formula() -> None:
    cond_logits, uncond_logits = torch.tensor([2.0, 1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0, 1.0])
    model = StubModel([cond_logits], [uncond_logits])
    grid = (40, 5, 4, 4)
    cond_tokens, cond_mask = torch.ones(grid, dtype=torch.long), torch.zeros(grid, dtype=torch.bool)
    cond_mask[:, 0] = True
    tasks, classes = prefix(40)
    scale = 1.5
    out = sample(
        model,
        cond_tokens,
        cond_mask,
        tasks,
        classes,
        steps=1,
        guidance_scale=scale,
        generator=torch.Generator().manual_seed(0),
    )
    tokens, task_ids, class_ids = model.calls[0]
    assert tokens.shape[0] == 80 and len(model.calls) == 1  # one pass over the batch and its twin
    assert torch.equal(task_ids[40:], torch.full((40,), UNCOND_TASK_ID)) and (class_ids[40:] == 7).all()
    assert torch.equal(task_ids[:40], tasks) and torch.equal(class_ids[:40], classes)
    assert (tokens[40:] == MASK_ID).all()  # the twin sees [MASK] instead of condition tokens
    assert torch.equal(tokens[:40][cond_mask], cond_tokens[cond_mask])
    guided = torch.softmax(cond_logits + scale * (cond_logits - uncond_logits), 0)
    counts = torch.bincount(out.flatten(), minlength=4).float()
    assert chi_square(counts, guided) < 16.3  # chi2(3) 0.999
    pair = TokenLogits((cond_logits.view(1, 1, 4),), (4,)).guided(
        TokenLogits((uncond_logits.view(1, 1, 4),), (4,)), scale
    )
    torch.testing.assert_close(pair.parts[0].flatten(), cond_logits + scale * (cond_logits - uncond_logits))


def test_guidance_ramp() -> None:
    assert [guidance_at(t, 4, 2.0, "linear") for t in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert guidance_at(0, 4, 2.0, "constant") == 2.0
    cond_tokens, cond_mask = condition()
    tasks, classes = prefix()
    _, history = sample(
        random_stub(),
        cond_tokens,
        cond_mask,
        tasks,
        classes,
        guidance_scale=3.0,
        guidance_ramp="linear",
        return_history=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert [h.guidance_scale for h in history] == [3.0 * (t + 1) / 12 for t in range(12)]
    with pytest.raises(ValueError):
        sample(
            random_stub(), cond_tokens, cond_mask, tasks, classes, guidance_scale=1.0, guidance_ramp="cosine"
        )


# ----------------------------------------------------------------------------- the real model


def test_real_model_cost_and_grids() -> None:
    torch.manual_seed(0)
    model = CommitTransformer.from_preset(
        "tiny", codebook_size=2**18, num_classes=2, hidden_size=64, num_layers=2, max_height=4, max_width=4
    )
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    for grid in [(2, 5, 4, 4), (2, 1, 4, 4)]:
        calls.clear()
        cond_tokens = torch.randint(0, 2**18, grid)
        cond_mask = torch.zeros(grid, dtype=torch.bool)
        tasks, classes = torch.full((2,), FP), torch.tensor([0, 2])
        out = sample(
            model, cond_tokens, cond_mask, tasks, classes, generator=torch.Generator().manual_seed(0)
        )
        assert out.shape == grid and out.min() >= 0 and out.max() < 2**18
        assert len(calls) == 12  # 12 steps, 12 forward passes
        calls.clear()
        sample(
            model,
            cond_tokens,
            cond_mask,
            tasks,
            classes,
            guidance_scale=2.0,
            generator=torch.Generator().manual_seed(0),
        )
        assert calls == [torch.Size([4, *grid[1:]])] * 12
