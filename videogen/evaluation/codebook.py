"""Codebook usage over an evaluation set: a running histogram of token ids.

Usage must be measured over a whole evaluation set, not per batch: two clips hold a few thousand
tokens against 2^18 codes, so a per-batch "unique ratio" says nothing. Feed every batch of tokens to
:meth:`CodebookUsage.update`, then read :meth:`CodebookUsage.summary`. In data-parallel evaluation,
all-reduce (sum) ``histogram`` across ranks before reading the summary.
"""

from __future__ import annotations

import math

import torch

from videogen.errors import UserError


class CodebookUsage:
    """Running histogram over token ids ``0 .. codebook_size - 1`` (int64 counts, on the tokens' device).

    * ``usage_fraction``: codes seen at least once / ``codebook_size``;
    * ``entropy``: H(p) in nats of the empirical code distribution p = histogram / total;
    * ``perplexity``: exp(H(p)), the "effective number of codes" (= k when k codes are used equally).
    """

    def __init__(self, codebook_size: int) -> None:
        if codebook_size < 1:
            raise UserError(f"codebook size {codebook_size} must be >= 1")
        self.codebook_size = codebook_size
        self.histogram: torch.Tensor | None = None

    def update(self, tokens: torch.Tensor) -> None:
        """Count the integer token ids of any shape (e.g. ``B T' H' W'``)."""
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise UserError(f"codebook usage: tokens must be integer ids; got dtype {tokens.dtype}")
        flat = tokens.reshape(-1).long()
        if flat.numel() > 0:
            low, high = int(flat.min()), int(flat.max())
            if low < 0 or high >= self.codebook_size:
                raise UserError(
                    f"codebook usage: token ids span [{low}, {high}] but the codebook has {self.codebook_size} "
                    "codes; pass the tokenizer's codebook size"
                )
        counts = torch.bincount(flat, minlength=self.codebook_size)
        if self.histogram is None:
            self.histogram = counts
        else:
            self.histogram += counts.to(self.histogram.device)

    @property
    def total(self) -> int:
        """Number of tokens counted so far."""
        return 0 if self.histogram is None else int(self.histogram.sum())

    def _counts(self) -> torch.Tensor:
        if self.total == 0:
            raise UserError("codebook usage: no tokens were counted (is the evaluation set empty?)")
        return self.histogram

    @property
    def used_codes(self) -> int:
        return int((self._counts() > 0).sum())

    @property
    def usage_fraction(self) -> float:
        return self.used_codes / self.codebook_size

    @property
    def entropy(self) -> float:
        counts = self._counts().double()
        probs = counts[counts > 0] / counts.sum()
        return float(-(probs * probs.log()).sum())

    @property
    def perplexity(self) -> float:
        return math.exp(self.entropy)

    def summary(self) -> dict:
        """JSON-ready: codebook_size, num_tokens, used_codes, usage_fraction, entropy (nats), perplexity."""
        return {
            "codebook_size": self.codebook_size,
            "num_tokens": self.total,
            "used_codes": self.used_codes,
            "usage_fraction": self.usage_fraction,
            "entropy": self.entropy,
            "perplexity": self.perplexity,
        }
