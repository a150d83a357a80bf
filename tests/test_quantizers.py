"""FSQ, BSQ and VQ (LFQ has its own file): id <-> code round trips, shapes, straight-through gradients,
losses, code usage, the VQ codebook's EMA and dead-code restarts (one and two ranks), and a tokenizer
built on each of the four quantizers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from videogen.config_loader import ConfigError
from videogen.tokenizer import VideoTokenizer
from videogen.tokenizer.bsq import BSQ
from videogen.tokenizer.config import QUANTIZERS
from videogen.tokenizer.fsq import FSQ
from videogen.tokenizer.testing import random_video, tiny_config
from videogen.tokenizer.vq import VQ

# ----------------------------------------------------------------------------- FSQ


@pytest.mark.parametrize("levels", [(2,), (3, 4), (8, 5, 5, 5), (8, 8, 4, 4)])
def test_fsq_every_id_round_trips_and_codes_are_distinct(levels):
    fsq = FSQ(levels)
    assert fsq.codebook_size == math.prod(levels) and fsq.latent_channels == len(levels)
    ids = torch.arange(fsq.codebook_size).view(1, -1, 1, 1)
    codes = fsq.indices_to_codes(ids)  # (1, C, K, 1, 1)
    assert codes.shape == (1, len(levels), fsq.codebook_size, 1, 1)
    assert codes.min() >= -1 and codes.max() <= 1
    assert torch.equal(fsq.codes_to_indices(codes), ids)
    assert len({tuple(c) for c in codes.flatten(2).squeeze(0).T.tolist()}) == fsq.codebook_size


def test_fsq_mixed_radix_channel_zero_least_significant():
    fsq = FSQ((3, 4))
    # id 7 = digit0 + 3 * digit1 -> digits (1, 2); levels -1..1 (step 1) and -2..1 (step 1) over half-widths 1, 2
    codes = fsq.indices_to_codes(torch.tensor([[7]]))
    assert codes.flatten().tolist() == [0.0, 0.0]
    assert fsq.indices_to_codes(torch.tensor([[0]])).flatten().tolist() == [-1.0, -1.0]
    assert fsq.indices_to_codes(torch.tensor([[11]])).flatten().tolist() == [1.0, 0.5]


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (2, 3, 4)])
def test_fsq_rounds_the_bound_with_straight_through_gradient(levels):
    fsq = FSQ(levels)
    z = (torch.randn(2, len(levels), 3, 4, 4, dtype=torch.float64) * 2).requires_grad_()
    out = fsq(z)
    half = torch.tensor([level // 2 for level in levels], dtype=torch.float64).view(1, -1, 1, 1, 1)
    bounded = fsq.bound(z)
    torch.testing.assert_close(out.quantized, torch.round(bounded) / half)
    assert out.loss.item() == 0.0
    codes, ids = fsq.quantize(z)
    assert torch.equal(codes, out.quantized.detach()) and torch.equal(ids, out.indices)
    weights = torch.randn_like(z)
    (grad,) = torch.autograd.grad((out.quantized * weights).sum(), z)
    (expected,) = torch.autograd.grad((bounded / half * weights).sum(), z)
    torch.testing.assert_close(grad, expected)
    assert grad.abs().min() > 0


def test_fsq_reaches_every_level_and_maps_zero_to_the_middle():
    fsq = FSQ((5, 4))
    z = torch.linspace(-20, 20, 401, dtype=torch.float64).view(1, 1, -1).expand(1, 2, -1)
    codes, _ = fsq.quantize(z)
    assert codes[0, 0].unique().tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert codes[0, 1].unique().tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert fsq.quantize(torch.zeros(1, 2, 1))[0].flatten().tolist() == [0.0, 0.0]


def test_fsq_usage_statistics():
    fsq = FSQ((4, 4))
    out_all = fsq.usage_statistics(torch.arange(16))
    assert out_all[0].item() == 1.0 and out_all[1].item() == pytest.approx(16)
    out_one = fsq.usage_statistics(torch.full((50,), 3))
    assert out_one[0].item() == pytest.approx(1 / 16) and out_one[1].item() == pytest.approx(1.0)


def test_fsq_config_errors():
    with pytest.raises(ConfigError, match="levels"):
        FSQ((1, 4))
    with pytest.raises(ValueError, match="latents"):
        FSQ((4, 4))(torch.randn(1, 3, 2))


# ----------------------------------------------------------------------------- BSQ


def _naive_bsq_entropies(u: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over all 2**d codes c in {-1, +1}^d / sqrt(d) of 2 <u, c> / tau: the definition."""
    d = u.shape[-1]
    codes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)), dtype=u.dtype) / math.sqrt(d)
    log_p = torch.log_softmax(2 * u.reshape(-1, d) @ codes.T / temperature, dim=-1)
    p = log_p.exp()
    mean_p = p.mean(0)
    return -(p * log_p).sum(-1).mean(), -(mean_p * mean_p.log()).sum()


def test_bsq_codes_lie_on_the_unit_sphere_with_lfq_ids():
    bsq = BSQ(6)
    z = torch.randn(2, 6, 3, 4, 4, dtype=torch.float64)
    out = bsq(z)
    torch.testing.assert_close(out.quantized.norm(dim=1), torch.ones(2, 3, 4, 4, dtype=torch.float64))
    assert set((out.quantized * math.sqrt(6)).round().unique().tolist()) == {-1.0, 1.0}
    powers = (2 ** torch.arange(6)).view(1, 6, 1, 1, 1)
    assert torch.equal(out.indices, ((z > 0).long() * powers).sum(1))
    assert torch.equal(bsq.indices_to_codes(out.indices, torch.float64), out.quantized.detach())
    assert torch.equal(bsq.quantize(5 * z)[1], out.indices)  # only the direction of z matters


def test_bsq_gradient_is_that_of_the_normalization_and_loss_has_no_commitment():
    bsq = BSQ(5, entropy_weight=0.2, entropy_anneal_start=1.0)
    z = torch.randn(3, 5, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = bsq(z, step=0)
    weights = torch.randn_like(z)
    (grad,) = torch.autograd.grad((out.quantized * weights).sum(), z, retain_graph=True)
    (expected,) = torch.autograd.grad((F.normalize(z, dim=1) * weights).sum(), z)
    torch.testing.assert_close(grad, expected)
    assert out.commitment_loss.item() == 0.0
    u = F.normalize(z.detach(), dim=1).movedim(1, -1)
    per_sample, codebook = _naive_bsq_entropies(u, bsq.config.temperature)
    torch.testing.assert_close(out.per_sample_entropy, per_sample)
    torch.testing.assert_close(out.codebook_entropy, codebook)
    torch.testing.assert_close(out.loss, 0.2 * (per_sample - codebook))


# ----------------------------------------------------------------------------- VQ


def test_vq_takes_the_code_of_highest_cosine_and_round_trips():
    torch.manual_seed(0)
    vq = VQ(32, 4).eval()
    z = torch.randn(2, 4, 3, 5, 5)
    codes, ids = vq.quantize(z)
    unit = F.normalize(z, dim=1).movedim(1, -1).reshape(-1, 4)
    assert torch.equal(ids.flatten(), (unit @ vq.codebook.T).argmax(1))
    torch.testing.assert_close(codes.norm(dim=1), torch.ones(2, 3, 5, 5))
    assert torch.equal(vq.codes_to_indices(codes), ids)
    every = torch.arange(32).view(1, 32)
    assert torch.equal(vq.codes_to_indices(vq.indices_to_codes(every)), every)


def test_vq_straight_through_gradient_and_commitment():
    torch.manual_seed(0)
    vq = VQ(16, 3, commitment_weight=0.5).eval()
    z = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    out = vq(z)
    unit = F.normalize(z, dim=1)
    weights = torch.randn_like(z)
    (grad,) = torch.autograd.grad((out.quantized * weights).sum(), z)
    (expected,) = torch.autograd.grad((unit * weights).sum(), z)
    torch.testing.assert_close(grad, expected)
    chosen = vq.indices_to_codes(out.indices, torch.float64)
    torch.testing.assert_close(out.quantized.detach(), chosen)
    torch.testing.assert_close(out.loss, 0.5 * ((unit.detach() - chosen) ** 2).mean())


def test_vq_ema_moves_codes_to_the_mean_of_their_latents_and_eval_freezes_them():
    vq = VQ(2, 2, ema_decay=0.9, dead_code_threshold=0.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    z = torch.tensor([[3.0, 1.0], [2.0, -1.0], [1.0, 4.0]]).T.reshape(1, 2, 3)  # (B=1, dim, N=3)
    vq(z)
    unit = F.normalize(z[0].T, dim=1)
    # first update from zero EMAs: sum of assigned unit latents, normalized
    torch.testing.assert_close(vq.codebook[0], F.normalize(unit[0] + unit[1], dim=0))
    torch.testing.assert_close(vq.codebook[1], unit[2])
    torch.testing.assert_close(vq.ema_count, torch.tensor([0.2, 0.1]))
    frozen = vq.codebook.clone()
    vq.eval()
    vq(torch.randn(1, 2, 7))
    assert torch.equal(vq.codebook, frozen)


def test_vq_restarts_dead_codes_from_batch_latents():
    torch.manual_seed(0)
    vq = VQ(8, 3, dead_code_threshold=0.5)
    with torch.no_grad():
        vq.codebook.copy_(
            F.normalize(torch.tensor([1.0, 0.0, 0.0]).repeat(8, 1) + 0.01 * torch.randn(8, 3), dim=1)
        )
    z = torch.randn(2, 3, 6, 6)
    unit = F.normalize(z, dim=1).movedim(1, -1).reshape(-1, 3)
    counts = torch.bincount((unit @ vq.codebook.T).argmax(1), minlength=8).float()
    dead = counts < 0.5 * counts.mean()  # the EMA counts are these times (1 - decay)
    assert dead.sum() >= 2  # codes clustered at one pole cannot all be picked
    out = vq(z)
    assert int(out.metrics["quantizer/restarted_codes"]) == int(dead.sum())
    for code in vq.codebook[dead]:  # each restarted code is a latent of the batch
        assert (unit - code).norm(dim=1).min() < 1e-6
    assert (vq.ema_count > 0).all()


def test_vq_state_is_saved_and_stays_fp32_under_casts():
    vq = VQ(16, 4)
    assert {"codebook", "ema_count", "ema_sum"} <= set(vq.state_dict())
    vq = vq.to(torch.bfloat16)
    assert vq.codebook.dtype == vq.ema_count.dtype == vq.ema_sum.dtype == torch.float32


def _vq_worker(rank: int, init_file: str, queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        vq = VQ(16, 3, dead_code_threshold=0.2)
        torch.manual_seed(100 + rank)  # different batches and restart draws on each rank
        for _ in range(3):
            vq(torch.randn(2, 3, 5, 5))
        queue.put((rank, vq.codebook.tolist(), vq.ema_count.tolist()))
    finally:
        dist.destroy_process_group()


def test_vq_codebooks_stay_identical_across_ranks(tmp_path):
    """Two gloo ranks with different data: the EMA sums are all-reduced and rank 0's restart picks are
    broadcast, so both ranks end with the same codebook (else the replicas would drift apart)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    processes = [ctx.Process(target=_vq_worker, args=(r, str(tmp_path / "init"), queue)) for r in range(2)]
    for p in processes:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    (_, book0, count0), (_, book1, count1) = results
    assert book0 == book1 and count0 == count1


# ----------------------------------------------------------------------------- in the tokenizer


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_tokenizer_with_each_quantizer(kind, tmp_path):
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(tiny_config(quantizer=kind)).float()
    assert tokenizer.codebook_size == 64
    clip = random_video(2, 9, 16, 16, dtype=torch.float32)
    out = tokenizer(clip, step=0)
    assert out.tokens.shape == (2, 3, 4, 4) and out.tokens.max() < 64
    assert out.quantized.shape == (2, tokenizer.latent_channels, 3, 4, 4)
    assert 0 < out.quantizer_metrics["quantizer/batch_usage"] <= 1
    (out.reconstruction.square().mean() + out.quantizer_loss).backward()
    assert tokenizer.encoder.conv_in.weight.grad.abs().sum() > 0  # through the straight-through codes

    tokenizer.eval()
    tokens = tokenizer.tokenize(clip)
    codes = tokenizer.encode(clip).codes
    torch.testing.assert_close(tokenizer.indices_to_codes(tokens), codes)
    torch.testing.assert_close(tokenizer.detokenize(tokens), tokenizer.decode(codes).clamp(-1, 1))
    tokenizer.save_pretrained(tmp_path / kind)
    loaded = VideoTokenizer.from_pretrained(tmp_path / kind)
    assert loaded.config.quantizer == kind
    assert torch.equal(loaded.tokenize(clip), tokens)


def test_quantizer_choice_is_validated():
    with pytest.raises(ConfigError, match="quantizer"):
        tiny_config(quantizer="pq")
    with pytest.raises(ConfigError, match="'fsq.levels'"):
        tiny_config(quantizer="fsq", fsq={"levels": (1,)})
