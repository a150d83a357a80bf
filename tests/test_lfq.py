"""LFQ: bit order, straight-through gradient, losses, annealing, exact factorized entropy, all-reduce."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from videogen.config_loader import ConfigError
from videogen.tokenizer import LFQ
from videogen.tokenizer.lfq_entropy import factorized_entropy_terms
from videogen.tokenizer.lfq_naive import naive_entropy_terms


def test_channel_zero_is_the_least_significant_bit():
    lfq = LFQ(4)
    # channels (0, 1, 2, 3) = (+, -, -, +): bits 0 and 3 set -> 1 + 8 = 9
    codes = torch.tensor([1.0, -1.0, -1.0, 1.0]).view(1, 4, 1)
    assert lfq.codes_to_indices(codes).tolist() == [[9]]
    assert lfq.indices_to_codes(torch.tensor([[9, 2]])).tolist() == [
        [[1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]]
    ]


@pytest.mark.parametrize("bits", [1, 5, 18])
def test_index_code_round_trip(bits):
    lfq = LFQ(bits)
    indices = torch.randint(0, 2**bits, (3, 2, 4, 5))
    codes = lfq.indices_to_codes(indices)
    assert codes.shape == (3, bits, 2, 4, 5)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(lfq.codes_to_indices(codes), indices)


def test_quantized_is_exactly_the_sign_with_straight_through_gradient():
    lfq = LFQ(6, normalization="none")
    z = torch.randn(2, 6, 3, 4, 4, requires_grad=True)
    out = lfq(z)
    assert torch.equal(out.quantized, torch.where(z > 0, 1.0, -1.0))
    assert torch.equal(out.indices, lfq.codes_to_indices(z))
    weights = torch.randn_like(z)
    (grad,) = torch.autograd.grad((out.quantized * weights).sum(), z)
    torch.testing.assert_close(grad, weights)


def test_loss_values_and_annealing():
    lfq = LFQ(6, normalization="none", entropy_anneal_start=3.0, entropy_anneal_steps=2000)
    z = torch.randn(2, 6, 3, 4, 4)
    out = lfq(z, step=0)
    torch.testing.assert_close(out.commitment_loss, 0.25 * ((z - torch.where(z > 0, 1.0, -1.0)) ** 2).mean())
    per_sample, codebook = lfq.entropy_terms(z.movedim(1, -1))
    torch.testing.assert_close(out.per_sample_entropy, per_sample)
    torch.testing.assert_close(out.entropy_loss, 0.3 * (per_sample - codebook))
    torch.testing.assert_close(out.loss, out.commitment_loss + out.entropy_loss)
    weights = [lfq.entropy_weight_at(s) for s in (0, 1000, 2000, 10_000, None)]
    assert weights == pytest.approx([0.3, 0.2, 0.1, 0.1, 0.1])
    assert LFQ(6, entropy_anneal_start=1.0).entropy_weight_at(0) == pytest.approx(0.1)


def test_normalization_keeps_latents_order_one_and_is_per_frame():
    z = torch.randn(2, 8, 3, 4, 4) * 100 + 50
    lfq = LFQ(8, normalization="group_norm")
    normed = lfq.normalize(z)
    frame_std = normed.std(dim=(1, 3, 4), correction=0)
    torch.testing.assert_close(frame_std, torch.ones_like(frame_std), rtol=1e-3, atol=1e-3)
    # changing frame 2 leaves the normalized frames 0 and 1 unchanged (causal)
    z2 = z.clone()
    z2[:, :, 2] *= 7
    torch.testing.assert_close(lfq.normalize(z2)[:, :, :2], normed[:, :, :2])
    clamped = LFQ(8, normalization="soft_clamp", soft_clamp_value=2.0).normalize(z)
    assert clamped.abs().max() <= 2.0


def test_codebook_statistics():
    lfq = LFQ(3)
    usage, perplexity = lfq.usage_statistics(torch.tensor([[0, 0, 1, 5]]))
    assert usage.item() == pytest.approx(3 / 8)
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert perplexity.item() == pytest.approx(math.exp(entropy), rel=1e-6)


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="normalization"):
        LFQ(4, normalization="layer")
    with pytest.raises(ConfigError, match="temperature"):
        LFQ(4, temperature=0)
    with pytest.raises(ValueError, match=r"\(B, 4, \.\.\.\)"):
        LFQ(4)(torch.randn(2, 5, 3))


# ----------------------------------------------------------------------------- exact entropy


@pytest.mark.parametrize("bits", [4, 5, 8, 10, 12])
@pytest.mark.parametrize("scale", [0.001, 0.01, 1.0, 10.0])
def test_factorized_entropy_equals_naive(bits, scale):
    """Both terms and their gradients match the full softmax over 2**bits codes (float64, rel < 1e-5)."""
    generator = torch.Generator().manual_seed(bits)
    base = torch.randn(48, bits, generator=generator, dtype=torch.float64) * scale
    mix = torch.rand(2, generator=generator, dtype=torch.float64)
    results = []
    for fn in (factorized_entropy_terms, naive_entropy_terms):
        z = base.clone().requires_grad_()
        per_sample, codebook = fn(z, 0.01)
        (grad,) = torch.autograd.grad(mix[0] * per_sample - mix[1] * codebook, z)
        results.append((per_sample.detach(), codebook.detach(), grad))
    (fp, fc, fg), (npe, nc, ng) = results
    assert abs(fp - npe) <= 1e-5 * abs(npe) + 1e-12
    assert abs(fc - nc) <= 1e-5 * abs(nc)
    assert (fg - ng).norm() <= 1e-5 * ng.norm() + 1e-12
    if scale <= 0.01:  # an informative case, not all-saturated: the gradient is not zero
        assert ng.norm() > 1e-3


def test_uniform_usage_gives_maximal_codebook_entropy():
    bits = 10
    lfq = LFQ(bits)
    every_code = lfq.indices_to_codes(torch.arange(2**bits).view(1, -1)).to(
        torch.float64
    )  # (1, bits, 2^bits)
    per_sample, codebook = lfq.entropy_terms(every_code[0].T)
    assert codebook.item() == pytest.approx(bits * math.log(2), rel=1e-9)
    assert per_sample.item() < 1e-9  # |z| = 1 at tau = 0.01: every p_n is one-hot
    one_code = every_code[0].T[:1].expand(64, bits)
    assert lfq.entropy_terms(one_code)[1].item() < 1e-9


def test_entropy_is_computed_in_fp32_under_autocast():
    lfq = LFQ(12)
    z = torch.randn(2, 12, 3, 4, 4)
    reference = lfq(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lfq(z)
    assert out.loss.dtype == torch.float32
    assert out.codebook_entropy.item() == reference.codebook_entropy.item()
    assert out.loss.item() == reference.loss.item()


def test_factorized_entropy_handles_20480_latents_at_18_bits():
    """Both terms and gradients for 16 clips x 1280 latents of 18 bits (the naive form needs ~20 GiB per
    N x 2^18 matrix): finite gradients, entropies within their bounds."""
    z = torch.randn(20480, 18, requires_grad=True)
    per_sample, codebook = factorized_entropy_terms(z, 0.01)
    (per_sample - codebook).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert 0 <= per_sample.item() <= 18 * math.log(2)
    assert math.log(2) < codebook.item() <= 18 * math.log(2) + 1e-4


# ----------------------------------------------------------------------------- distributed


def _distributed_worker(rank: int, world: int, init_file: str, z_full: torch.Tensor, queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        z = z_full.chunk(world)[rank].clone().requires_grad_()
        per_sample, codebook = factorized_entropy_terms(z, 0.01)
        codebook.backward()
        queue.put((rank, codebook.item(), z.grad.tolist()))  # plain data outlives the process
    finally:
        dist.destroy_process_group()


def test_codebook_entropy_is_all_reduced_across_ranks(tmp_path):
    """Two gloo ranks with half a batch each get the full batch's codebook entropy; with the usual
    gradient averaging over ranks (grad / world) each rank's gradient is the full-batch gradient."""
    torch.manual_seed(0)
    z_full = torch.randn(64, 8, dtype=torch.float64) * 0.01
    reference = z_full.clone().requires_grad_()
    _, codebook = factorized_entropy_terms(reference, 0.01)
    codebook.backward()

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    processes = [
        ctx.Process(target=_distributed_worker, args=(r, 2, str(tmp_path / "init"), z_full, queue))
        for r in range(2)
    ]
    for p in processes:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    # the local-only entropy differs, so agreement means the table was reduced
    assert abs(factorized_entropy_terms(z_full[:32], 0.01)[1].item() - codebook.item()) > 1e-3
    for rank, value, grad in results:
        assert value == pytest.approx(codebook.item(), rel=1e-12)
        torch.testing.assert_close(
            torch.tensor(grad, dtype=torch.float64) / 2, reference.grad.chunk(2)[rank], rtol=1e-9, atol=1e-12
        )
