"""Input embedding: code ids (as sub-tokens), [MASK], task and class tokens, factorized positions."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from videogen.transformer.config import TransformerConfig
from videogen.transformer.vocab import MASK_ID, split_tokens


class InputEmbedding(nn.Module):
    """``[task][class][T' x H' x W' tokens]`` -> ``(B, 2 + T'*H'*W', D)`` vectors.

        ``token_input: table``: a code id is the sum of its sub-token embeddings (one table per sub-token, one
        row per sub-token id). ``token_input: bits``: the id's b binary digits as a +-1 vector times one
        ``(b, D)`` matrix (MaskBit's bit tokens; for LFQ / BSQ the digits are the quantizer's signs, so codes
        that differ in a few signs, often the ones the decoder barely uses, start with nearby vectors).
        ``MASK_ID`` positions take one learned vector instead. Task and class ids index their own tables,
        so no special id shares a row with a code id. Positions are factorized: the vector at latent
        ``(t, h, w)`` adds ``pos_t[t] + pos_h[h] + pos_w[w]``, so every grid up to the maximum (a 1-frame
        image, a 5-frame video) uses the same weights (``position: rope`` adds none here: the attention rotates
    queries and keys instead, ``videogen.transformer.rope``). ``class_input: every`` also adds the class vector to
        every grid position's input (the prefix token stays).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.sizes = config.sub_token_sizes
        self.bits = config.code_bits if config.token_input == "bits" else 0
        self.code_tables = nn.ModuleList(
            () if self.bits else (nn.Embedding(size, dim) for size in self.sizes)
        )
        self.bit_projection = nn.Linear(self.bits, dim, bias=False) if self.bits else None
        self.mask_embedding = nn.Parameter(torch.zeros(dim))
        self.task_embedding = nn.Embedding(config.num_task_tokens, dim)
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim)  # last row = UNCOND
        self.class_everywhere = config.class_input == "every"
        self.learned_positions = config.learned_positions
        if self.learned_positions:
            self.pos_t = nn.Parameter(torch.zeros(config.max_frames, dim))
            self.pos_h = nn.Parameter(torch.zeros(config.max_height, dim))
            self.pos_w = nn.Parameter(torch.zeros(config.max_width, dim))
            for p in (self.pos_t, self.pos_h, self.pos_w):
                nn.init.normal_(p, std=config.init_std)
        nn.init.normal_(self.mask_embedding, std=config.init_std)
        for table in (*self.code_tables, self.task_embedding, self.class_embedding):
            nn.init.normal_(table.weight, std=config.init_std)
        if self.bit_projection is not None:
            nn.init.normal_(self.bit_projection.weight, std=config.init_std)

    def code_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """Code ids ``(...)`` in ``[0, codebook_size)`` -> ``(..., D)`` (sum of the sub-token embeddings)."""
        if self.bit_projection is not None:
            powers = 2 ** torch.arange(self.bits, device=ids.device)
            signs = ((ids.unsqueeze(-1) & powers) > 0).to(
                self.bit_projection.weight.dtype
            ) * 2 - 1  # (..., b)
            return self.bit_projection(signs)
        subs = split_tokens(ids, self.sizes)
        out = self.code_tables[0](subs[0])
        for table, sub in zip(self.code_tables[1:], subs[1:]):
            out = out + table(sub)
        return out

    def forward(self, tokens: torch.Tensor, task_ids: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        frames, height, width = tokens.shape[1:]
        is_mask = (tokens == MASK_ID).unsqueeze(-1)
        x = self.code_embedding(tokens.clamp_min(0))  # (B, T, H, W, D)
        x = torch.where(is_mask, self.mask_embedding.to(x.dtype), x)
        if self.learned_positions:
            x = x + (
                self.pos_t[:frames, None, None]
                + self.pos_h[None, :height, None]
                + self.pos_w[None, None, :width]
            )
        x = rearrange(x, "b t h w d -> b (t h w) d")
        classes = self.class_embedding(class_ids)  # (B, D)
        if self.class_everywhere:
            x = x + classes.unsqueeze(1)
        prefix = torch.stack([self.task_embedding(task_ids), classes], dim=1)  # (B, 2, D)
        return torch.cat([prefix, x], dim=1)
