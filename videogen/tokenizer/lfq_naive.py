"""Naive LFQ entropies: a softmax over all 2**bits codes per latent. For tests and benchmarks only.

Memory is N * 2**bits floats per tensor (1 MiB per latent in fp32 at 18 bits); use
``lfq_entropy.factorized_entropy_terms`` everywhere else.
"""

from __future__ import annotations

import torch

from videogen.tokenizer.lfq_entropy import code_bits


def naive_entropy_terms(z: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``z (..., bits)`` -> (mean per-sample entropy, codebook entropy) in nats, from the full softmax.

    p_n = softmax over codes c in {-1, +1}^bits of 2 <z_n, c> / tau (code index = sum_i 2^i [c_i > 0]).
    """
    bits = z.shape[-1]
    z = z.reshape(-1, bits)
    codes = code_bits(bits, z.device, z.dtype) * 2 - 1  # (2^bits, bits) in {-1, +1}
    log_p = torch.log_softmax(2 * z @ codes.T / temperature, dim=-1)  # (N, 2^bits)
    p = log_p.exp()
    per_sample = -(p * log_p).sum(-1).mean()
    mean_p = p.mean(0)
    codebook = -(mean_p * torch.log(mean_p.clamp_min(torch.finfo(z.dtype).tiny))).sum()
    return per_sample, codebook
