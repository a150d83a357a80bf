"""``TokenLogits``: the transformer's output over code ids, one tensor per sub-token head.

A small vocabulary has one head of ``codebook_size`` logits; a large one (MAGVIT-v2) two heads of
``n_lo`` and ``n_hi`` logits whose product distribution covers every code id. No head covers a
special id, so nothing sampled from here can be [MASK], a task or a class. All probabilities are
computed in float32 whatever the dtype of the logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from videogen.transformer.draws import gumbel
from videogen.transformer.vocab import merge_tokens, split_tokens


@dataclass(frozen=True)
class TokenLogits:
    """Logits over code ids.

    parts: one tensor per sub-token head, low part first, each ``(B, N, sizes[i])``.
    sizes: vocabulary of each head; ``prod(sizes)`` is the codebook size.
    """

    parts: tuple[torch.Tensor, ...]
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.parts) != len(self.sizes):
            raise ValueError(f"TokenLogits: {len(self.parts)} heads but sizes {self.sizes}")
        for part, size in zip(self.parts, self.sizes):
            if part.dim() != 3 or part.shape[-1] != size or part.shape[:2] != self.parts[0].shape[:2]:
                raise ValueError(
                    f"TokenLogits: head of shape {tuple(part.shape)} does not fit sizes {self.sizes}"
                )

    @property
    def num_codes(self) -> int:
        return math.prod(self.sizes)

    @property
    def shape(self) -> tuple[int, int]:
        """``(B, N)``: batch size and number of token positions."""
        return tuple(self.parts[0].shape[:2])

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TokenLogits:
        """Apply ``fn`` to every head (e.g. ``lambda x: x[:2]`` to take part of the batch)."""
        return TokenLogits(tuple(fn(p) for p in self.parts), self.sizes)

    def guided(self, uncond: TokenLogits, scale: float | torch.Tensor) -> TokenLogits:
        """Classifier-free guidance: ``cond + scale * (cond - uncond)`` per head (self is cond)."""
        parts = tuple(c.float() + scale * (c.float() - u.float()) for c, u in zip(self.parts, uncond.parts))
        return TokenLogits(parts, self.sizes)

    def log_probs(self) -> tuple[torch.Tensor, ...]:
        """float32 log-softmax of every head, each ``(B, N, sizes[i])``."""
        return tuple(F.log_softmax(p.float(), dim=-1) for p in self.parts)

    def log_prob(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` code ids -> ``(B, N)`` float32 log-probability (sum over the heads)."""
        total = torch.zeros(self.shape, dtype=torch.float32, device=ids.device)
        for lp, sub in zip(self.log_probs(), split_tokens(ids, self.sizes)):
            total = total + lp.gather(-1, sub.unsqueeze(-1)).squeeze(-1)
        return total

    def cross_entropy(self, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """``(B, N)`` target code ids -> ``(B, N)`` float32 cross-entropy, summed over the heads."""
        batch, num = self.shape
        total = torch.zeros((batch, num), dtype=torch.float32, device=targets.device)
        for part, sub in zip(self.parts, split_tokens(targets, self.sizes)):
            ce = F.cross_entropy(
                part.float().flatten(0, 1), sub.flatten(), label_smoothing=label_smoothing, reduction="none"
            )
            total = total + ce.view(batch, num)
        return total

    def argmax(self) -> torch.Tensor:
        """``(B, N)`` most likely code id (the most likely sub-token of every head)."""
        return merge_tokens([p.argmax(-1) for p in self.parts], self.sizes)

    def sample(
        self,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one code id per position.

        Each head is sampled independently from ``softmax(logits / temperature)`` restricted to its
        ``top_k`` largest logits (per head; ``None`` = no restriction); ``temperature = 0`` takes the
        argmax. Noise comes from ``generator`` (any device; see ``rng.uniform``).

        Returns ``(ids, log_prob)``, both ``(B, N)``: the code ids (int64) and their float32
        log-probability under the unmodified distribution (temperature 1, no top-k), summed over heads.
        """
        if temperature < 0:
            raise ValueError(f"sampling temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        subs = []
        for part in self.parts:
            x = part.float()
            if top_k is not None and top_k < x.shape[-1]:
                kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
                x = x.masked_fill(x < kth, float("-inf"))
            if temperature == 0:
                subs.append(x.argmax(-1))
                continue
            # Gumbel-max: argmax(x / T + G) is an exact draw from softmax(x / T).
            subs.append((x / temperature + gumbel(tuple(x.shape), generator, x.device)).argmax(-1))
        ids = merge_tokens(subs, self.sizes)
        return ids, self.log_prob(ids)

    def accuracy(self, targets: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` bool: the argmax equals the target code id (every head right)."""
        return self.argmax() == targets
