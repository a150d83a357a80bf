"""Training-side masking: exact counts, the three-way mix, CFG dropout, task mix, loss and schedules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from videogen.errors import UserError
from videogen.transformer.logits import TokenLogits
from videogen.transformer.mask_schedules import mask_ratio, scheduled_mask_counts
from videogen.transformer.masking import (
    cfg_dropout,
    commit_loss,
    mix_tokens,
    prepare_training_inputs,
    sample_mask,
    sample_tasks,
    task_prefix,
)
from videogen.transformer.tasks import TASKS
from videogen.transformer.vocab import MASK_ID, TASK_IDS, UNCOND_TASK_ID

GRID = (4, 3, 4, 5)  # B, T', H', W'


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- schedules


def test_schedules_match_magvit_counts() -> None:
    """N = 1024, 12 steps: positions still masked after each step (commit_anchors §4.8)."""
    n = torch.tensor([1024])
    cosine = [1015, 989, 946, 886, 812, 724, 623, 512, 391, 265, 133, 0]
    exp = [1022, 1020, 1018, 1013, 1006, 992, 966, 922, 842, 701, 449, 0]
    assert scheduled_mask_counts(n, 12, "cosine")[:, 0].tolist() == cosine
    assert scheduled_mask_counts(n, 12, "exp")[:, 0].tolist() == exp
    assert scheduled_mask_counts(torch.tensor([12]), 12, "linear")[:, 0].tolist() == list(range(11, -1, -1))
    # at least one token fixed per step, none left at the end
    assert scheduled_mask_counts(torch.tensor([4]), 12, "cosine")[:, 0].tolist() == [3, 2, 1] + [0] * 9
    for name in ("cosine", "linear", "exp"):
        ratios = mask_ratio(torch.linspace(0, 1, 11), name, 1024)
        assert ratios[-1] == 0 and (ratios[1:] <= ratios[:-1]).all()
    with pytest.raises(ValueError):
        mask_ratio(0.5, "sqrt")


# ----------------------------------------------------------------------------- mask draws


@pytest.mark.parametrize("schedule", ["cosine", "linear", "exp"])
def test_masked_counts_are_exact(schedule: str) -> None:
    batch, num = GRID[0], math.prod(GRID[1:])
    for seed in range(20):
        masked = sample_mask(GRID, schedule=schedule, generator=gen(seed))
        assert masked.shape == GRID and masked.dtype == torch.bool
        # replay the documented draws: u per sample, then one score per position
        g = gen(seed)
        u = torch.rand(batch, generator=g)
        scores = torch.rand(batch, num, generator=g)
        ratio = mask_ratio(u, schedule, num).clamp(1e-6, 1.0)
        expected = (num * ratio + 1e-6).floor().long().clamp(1, num)
        assert masked.view(batch, -1).sum(1).tolist() == expected.tolist()
        for b in range(batch):  # the masked positions are the lowest scores
            lowest = scores[b].argsort()[: expected[b]]
            assert masked.view(batch, -1)[b, lowest].all()


def test_mask_counts_at_least_one_and_per_batch() -> None:
    for seed in range(50):
        single = sample_mask((3, 1, 1, 1), generator=gen(seed))
        assert single.all()  # N = 1: floor(N r) may be 0, clipped to 1
        same = sample_mask(GRID, ratio_mode="per_batch", generator=gen(seed)).view(GRID[0], -1).sum(1)
        assert (same == same[0]).all() and same[0] >= 1
    assert torch.equal(sample_mask(GRID, generator=gen(3)), sample_mask(GRID, generator=gen(3)))
    with pytest.raises(UserError):
        sample_mask(GRID, ratio_mode="per_token")


def test_three_way_mix_puts_each_token_where_the_rule_says() -> None:
    g = gen(1)
    targets = torch.randint(0, 100, GRID, generator=g)
    cond_tokens = torch.randint(100, 200, GRID, generator=g)  # distinguishable from targets
    cond_mask = torch.rand(GRID, generator=g) < 0.4
    masked = torch.rand(GRID, generator=g) < 0.5
    inputs = mix_tokens(targets, cond_tokens, cond_mask, masked)
    assert torch.equal(inputs[masked & cond_mask], cond_tokens[masked & cond_mask])
    assert (inputs[masked & ~cond_mask] == MASK_ID).all()
    assert torch.equal(inputs[~masked], targets[~masked])
    assert (masked & cond_mask).any() and (masked & ~cond_mask).any() and (~masked).any()


def test_prepare_training_inputs_is_consistent() -> None:
    g = gen(2)
    targets = torch.randint(0, 100, GRID, generator=g)
    cond_tokens = torch.randint(100, 200, GRID, generator=g)
    cond_mask = torch.zeros(GRID, dtype=torch.bool)
    cond_mask[:, 0] = True  # first latent frame is the condition
    tasks = torch.full((GRID[0],), TASK_IDS["frame_prediction"])
    classes = torch.arange(GRID[0])
    batch = prepare_training_inputs(
        targets,
        cond_tokens,
        cond_mask,
        tasks,
        classes,
        uncond_class_id=10,
        class_dropout=0,
        condition_dropout=0,
        generator=g,
    )
    assert torch.equal(batch.inputs, mix_tokens(targets, cond_tokens, cond_mask, batch.masked))
    assert torch.equal(batch.targets, targets) and torch.equal(batch.cond_mask, cond_mask)
    assert torch.equal(batch.task_ids, tasks) and torch.equal(batch.class_ids, classes)
    dropped = prepare_training_inputs(
        targets,
        cond_tokens,
        cond_mask,
        tasks,
        classes,
        uncond_class_id=10,
        class_dropout=1,
        condition_dropout=1,
    )
    assert not dropped.cond_mask.any() and (dropped.inputs[dropped.masked] == MASK_ID).all()
    assert (dropped.task_ids == UNCOND_TASK_ID).all() and (dropped.class_ids == 10).all()


def test_cfg_dropout_rates_and_nesting() -> None:
    n = 4000
    tasks = torch.full((n,), TASK_IDS["interpolation"])
    classes = torch.randint(0, 5, (n,), generator=gen(0))
    cond = torch.ones(n, 2, 2, 2, dtype=torch.bool)
    new_tasks, new_classes, new_cond = cfg_dropout(
        tasks, classes, cond, uncond_class_id=5, class_dropout=0.2, condition_dropout=0.1, generator=gen(4)
    )
    drop_class, drop_cond = new_classes == 5, new_tasks == UNCOND_TASK_ID
    assert torch.equal(drop_cond, ~new_cond.view(n, -1).any(1)) and torch.equal(
        drop_cond, ~new_cond.view(n, -1).all(1)
    )
    assert (drop_class | ~drop_cond).all()  # nested: a dropped condition always drops the class too
    assert torch.equal(new_classes[~drop_class], classes[~drop_class])
    for rate, dropped in ((0.2, drop_class), (0.1, drop_cond)):  # within 4 binomial sigmas
        assert abs(dropped.float().mean().item() - rate) < 4 * math.sqrt(rate * (1 - rate) / n)
    with pytest.raises(UserError):
        cfg_dropout(tasks, classes, cond, uncond_class_id=5, class_dropout=1.5)


# ----------------------------------------------------------------------------- tasks and prefix


def test_sample_tasks_by_weight() -> None:
    weights = {"frame_prediction": 3.0, "inpaint_central": 1.0, "class_generation": 0.0}
    picks = sample_tasks(weights, 8000, mode="per_sample", generator=gen(0))
    assert "class_generation" not in picks
    freq = picks.count("frame_prediction") / len(picks)
    assert abs(freq - 0.75) < 4 * math.sqrt(0.75 * 0.25 / len(picks))
    steps = [sample_tasks(weights, 4, generator=gen(s)) for s in range(200)]
    assert all(len(set(s)) == 1 and len(s) == 4 for s in steps)  # per step: one task for the batch
    assert {s[0] for s in steps} == {"frame_prediction", "inpaint_central"}
    assert sample_tasks(weights, 5, mode="per_sample", generator=gen(9)) == sample_tasks(
        weights, 5, mode="per_sample", generator=gen(9)
    )
    for bad in ({"frame_prediction": -1.0}, {"frame_prediction": 0.0}, {"teleport": 1.0}):
        with pytest.raises(UserError):
            sample_tasks(bad, 2)


def test_task_prefix_classes() -> None:
    names = [
        "class_generation",
        "frame_prediction",
        "class_frame_prediction",
        "class_generation",
        "unconditional",
    ]
    labels = torch.tensor([3, 4, 5, -1, 2])
    task_ids, class_ids = task_prefix(names, labels, num_classes=10)
    assert task_ids.tolist() == [TASKS[n].task_id for n in names]
    assert class_ids.tolist() == [3, 10, 5, 10, 10]
    assert task_prefix(names, None, 10)[1].tolist() == [10] * 5
    with pytest.raises(UserError):
        task_prefix(names, torch.tensor([10, 0, 0, 0, 0]), 10)


# ----------------------------------------------------------------------------- loss


def test_loss_groups_and_values() -> None:
    g = gen(5)
    batch, n = 2, 12
    logits = TokenLogits((torch.randn(batch, n, 16, generator=g),), (16,))
    targets = torch.randint(0, 16, (batch, 1, 3, 4), generator=g)
    masked = torch.rand(batch, 1, 3, 4, generator=g) < 0.5
    cond = torch.rand(batch, 1, 3, 4, generator=g) < 0.5
    out = commit_loss(logits, targets, masked, cond, label_smoothing=1e-4)
    ce = F.cross_entropy(
        logits.parts[0].reshape(-1, 16), targets.reshape(-1), label_smoothing=1e-4, reduction="none"
    )
    torch.testing.assert_close(out.loss, ce.mean())
    flat_m, flat_c = masked.reshape(-1), cond.reshape(-1)
    correct = (logits.parts[0].reshape(-1, 16).argmax(-1) == targets.reshape(-1)).float()
    for name, group in (("mask", flat_m & ~flat_c), ("refine", flat_m & flat_c), ("recons", ~flat_m)):
        assert out.metrics[f"{name}_count"] == group.sum().item()
        assert out.metrics[f"{name}_loss"] == pytest.approx(ce[group].mean().item(), rel=1e-5)
        assert out.metrics[f"{name}_acc"] == pytest.approx(correct[group].mean().item())
    # an empty group has a count of 0 and no loss/acc entry
    none = commit_loss(logits, targets, torch.zeros_like(masked), cond)
    assert (
        none.metrics["mask_count"] == 0
        and "mask_loss" not in none.metrics
        and "refine_acc" not in none.metrics
    )


def test_split_loss_is_the_joint_cross_entropy() -> None:
    """Two sub-token heads: summed CE == CE of the product distribution over all 2**bits codes."""
    g = gen(6)
    lo, hi = torch.randn(1, 5, 8, generator=g), torch.randn(1, 5, 4, generator=g)  # bits (3, 2)
    logits = TokenLogits((lo, hi), (8, 4))
    targets = torch.randint(0, 32, (1, 5), generator=g)
    joint = (F.log_softmax(lo, -1).unsqueeze(-2) + F.log_softmax(hi, -1).unsqueeze(-1)).reshape(1, 5, 32)
    expected = -joint.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # joint index = hi * 8 + lo
    torch.testing.assert_close(logits.cross_entropy(targets), expected)
    torch.testing.assert_close(logits.log_prob(targets), -expected)
    assert torch.equal(logits.argmax(), joint.argmax(-1))
