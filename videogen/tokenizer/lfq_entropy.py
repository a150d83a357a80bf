"""Exact, factorized LFQ entropies: O(N * bits) and O(N * 2^(bits/2) + 2^bits) instead of O(N * 2^bits).

The LFQ code distribution of a latent z in R^d is p(c) = softmax_c(2 <z, c> / tau) over c in {-1, +1}^d.
The logit is a sum over bits, so p factorizes: p(c) = prod_i pi_i(c_i), pi_i(+1) = sigmoid(4 z_i / tau).

* per-sample entropy  H(p_n) = sum_i h(pi_{n,i}), h = binary entropy (log-sigmoid form, stable);
* codebook entropy    H(mean_n p_n): split the bits into a low half (a bits) and a high half (b = d - a
  bits); A_n in R^(2^a) and B_n in R^(2^b) are the per-token distributions over each half's codes
  (products of per-bit probabilities, built as exp of one small GEMM of log-probabilities), and
  mean_n p_n(low, high) = (A^T B)[low, high] / N: one (2^a x N) @ (N x 2^b) GEMM.

Everything runs in at least fp32. When ``torch.distributed`` is initialized, A^T B and N are summed
over ranks by an autograd-aware all-reduce, so the codebook
entropy is the global batch's, and its gradient is right under gradient averaging (the all-reduce's
backward sums the identical upstream gradients of all ranks, the optimizer's averaging divides by them;
the same rule as ``torch.distributed.nn.functional.all_reduce``, written out here because that one is
deprecated).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the backward sums the upstream gradients over ranks as well."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _AllReduceSum.apply(tensor)
    return tensor


def code_bits(num_bits: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32):
    """``(2**num_bits, num_bits)`` 0/1 matrix: row = code index, column i = bit i (bit 0 least significant)."""
    index = torch.arange(2**num_bits, device=device)
    shifts = torch.arange(num_bits, device=device)
    return ((index[:, None] >> shifts) & 1).to(dtype)


def _log_table(log_p1: torch.Tensor, log_p0: torch.Tensor) -> torch.Tensor:
    """``(N, m)`` per-bit log-probs -> ``(N, 2**m)`` log-probs of the codes (column c = code c, bit 0 low).

    log T[n, c] = sum_i bit_i(c) log p1[n, i] + (1 - bit_i(c)) log p0[n, i]: one small GEMM (m is a quarter of the bits).
    """
    bits = code_bits(log_p1.shape[1], log_p1.device, log_p1.dtype)  # (2^m, m)
    return torch.cat([log_p1, log_p0], dim=1) @ torch.cat([bits, 1 - bits], dim=1).T


def _half_table(log_p1: torch.Tensor, log_p0: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-token distribution over the codes of some bits: ``(N, m)`` log-probs -> ``(N, 2**m)`` probs.

    The low and high bits of the group get small log tables, one broadcast add makes the full one,
    then one exp. Log-probabilities below ``floor`` are raised to it so no denormal float reaches exp
    or the GEMM (denormals make both many times slower; the entropies change by less than 1e-12).
    """
    low = log_p1.shape[1] // 2
    table_low = _log_table(log_p1[:, :low], log_p0[:, :low])  # (N, 2^low)
    table_high = _log_table(log_p1[:, low:], log_p0[:, low:])  # (N, 2^(m-low))
    table = (table_high[:, :, None] + table_low[:, None, :]).flatten(1)  # code = low + 2^low * high
    return torch.exp(table.clamp_min(floor))


def factorized_entropy_terms(z: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``z (..., bits)`` -> (mean per-sample entropy, codebook entropy), both scalars in nats.

    Exact (equal to the naive softmax over all 2**bits codes up to float rounding); computed in fp32
    (or the input's dtype when wider, e.g. float64 in tests).
    """
    bits = z.shape[-1]
    dtype = torch.promote_types(z.dtype, torch.float32)
    z = z.reshape(-1, bits).to(dtype)  # (..., bits) -> (N, bits)
    # |logit| beyond `bound` changes nothing measurable (the bit's entropy is < 1e-17 in fp32) but would
    # create denormal probabilities; clamping keeps every probability >= exp(-bound), a normal float
    bound = -0.5 * math.log(torch.finfo(dtype).tiny)  # 43.7 in fp32, 354 in fp64
    logits = (z * (4.0 / temperature)).clamp(-bound, bound)
    log_p1 = F.logsigmoid(logits)  # log pi(+1)
    log_p0 = F.logsigmoid(-logits)  # log pi(-1)
    p1, p0 = log_p1.exp(), log_p0.exp()
    per_sample = -(p1 * log_p1 + p0 * log_p0).sum(-1).mean()

    low = bits // 2  # bits 0..low-1 index the rows of the table, the rest its columns
    floor = 1.0 - bound  # A and B entries >= exp(floor): their products stay normal floats too
    table_a = _half_table(log_p1[:, :low], log_p0[:, :low], floor)  # (N, 2^low)
    table_b = _half_table(log_p1[:, low:], log_p0[:, low:], floor)  # (N, 2^(bits-low))
    joint = table_a.T @ table_b  # (2^low, 2^(bits-low)) = sum_n p_n
    count = torch.tensor(float(z.shape[0]), dtype=dtype, device=z.device)
    joint = _all_reduce_sum(joint)
    count = _all_reduce_sum(count)
    mean_p = joint / count
    tiny = torch.finfo(dtype).tiny  # 0 * log(tiny) = 0, and the gradient stays finite where p = 0
    codebook = -(mean_p * torch.log(mean_p.clamp_min(tiny))).sum()
    return per_sample, codebook
