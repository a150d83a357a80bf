"""``CommitTransformer``: bidirectional pre-LN transformer over ``[task][class][latent tokens]``."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file
from torch import nn

from videogen.config_loader import ConfigError, from_dict, to_dict
from videogen.errors import UserError
from videogen.export import (
    TRANSFORMER_FORMAT_VERSION,
    WEIGHTS_FILE,
    TransformerExportInfo,
    read_export_config,
    save_export,
)
from videogen.transformer.attention import SelfAttention, resolve_attention, window_mask
from videogen.transformer.config import TransformerConfig
from videogen.transformer.embeddings import InputEmbedding
from videogen.transformer.logits import TokenLogits
from videogen.transformer.rope import divided_angles, rope_angles
from videogen.transformer.vocab import MASK_ID

KIND = "transformer"

# ----------------------------------------------------------------------------- blocks


class MLP(nn.Module):
    """``(B, L, D) -> (B, L, D)``: GELU MLP or SwiGLU (gated, 2/3 of the width so parameters match)."""

    def __init__(self, dim: int, ratio: float, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "swiglu":
            hidden = int(math.ceil(ratio * dim * 2 / 3 / 8) * 8)
            self.fc1 = nn.Linear(dim, 2 * hidden)
        else:
            hidden = int(ratio * dim)
            self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.kind == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            h = F.gelu(h)
        return self.fc2(h)


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``. With ``attention_layout:
    divided``, ``x + time_attn(ln(x))`` (each grid position over its own place in every latent frame), then
    ``x + attn(ln(x))`` within each latent frame and the prefix, then the MLP.

    With ``class_input: adaln`` each layer norm's output is scaled and shifted per sample by a linear map
    of the condition vector ``(B, D)`` (DiT's adaLN), ``ln(x) * (1 + scale) + shift``; the map starts at
    zero.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = SelfAttention(dim, config.num_heads, config.attention_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = MLP(dim, config.mlp_ratio, config.mlp)
        self.dropout = nn.Dropout(config.dropout)
        self.modulation = nn.Linear(dim, 4 * dim) if config.class_input == "adaln" else None
        divided = config.attention_layout == "divided"
        self.norm_time = nn.LayerNorm(dim, eps=config.layer_norm_eps) if divided else None
        self.time_attn = SelfAttention(dim, config.num_heads, config.attention_dropout) if divided else None
        kernel = config.grid_conv
        self.grid_conv = nn.Conv3d(dim, dim, kernel, padding=kernel // 2, groups=dim) if kernel else None

    def _mix_grid(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``x + dwconv(grid positions)``: ``(B, 2 + N, D)``, the prefix untouched (zero padding at the edges)."""
        frames, height, width = grid
        cells = rearrange(x[:, 2:], "b (t h w) d -> b d t h w", t=frames, h=height, w=width)
        mixed = self.grid_conv(cells.contiguous(memory_format=torch.channels_last_3d))
        mixed = rearrange(mixed, "b d t h w -> b (t h w) d")
        return torch.cat([x[:, :2], x[:, 2:] + mixed], dim=1)

    def _attend_time(
        self, h: torch.Tensor, backend: str, angles: torch.Tensor | None, grid: tuple[int, int, int]
    ) -> torch.Tensor:
        """``(B, 2 + N, D) -> (B, 2 + N, D)``: each grid position attends to its own place in every latent
        frame; zero at the prefix."""
        columns = rearrange(h[:, 2:], "b (t s) d -> (b s) t d", t=grid[0])  # (B*H*W, T, D)
        out = rearrange(self.time_attn(columns, backend, angles), "(b s) t d -> b (t s) d", b=len(h))
        return torch.cat([out.new_zeros(len(h), 2, out.shape[-1]), out], dim=1)

    def _attend_space(
        self, h: torch.Tensor, backend: str, angles: torch.Tensor | None, grid: tuple[int, int, int]
    ) -> torch.Tensor:
        """``(B, 2 + N, D) -> (B, 2 + N, D)``: each latent frame attends within itself and to the prefix;
        the prefix's output is its mean over the frames."""
        frames = grid[0]
        prefix = h[:, :2].repeat_interleave(frames, dim=0)  # (B*T, 2, D), frames inner like (b t)
        cells = rearrange(h[:, 2:], "b (t s) d -> (b t) s d", t=frames)  # (B*T, H*W, D)
        out = self.attn(torch.cat([prefix, cells], dim=1), backend, angles)  # (B*T, 2 + H*W, D)
        prefix_out = rearrange(out[:, :2], "(b t) p d -> b t p d", t=frames).mean(dim=1)
        return torch.cat([prefix_out, rearrange(out[:, 2:], "(b t) s d -> b (t s) d", t=frames)], dim=1)

    def forward(
        self,
        x: torch.Tensor,
        backend: str,
        angles: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        condition: torch.Tensor | None = None,
        grid: tuple[int, int, int] | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``angles``: rotary angles of the joint sequence, or (space, time) for the divided layout
        (:func:`videogen.transformer.rope.divided_angles`); None = no rotation."""
        if self.grid_conv is not None:
            x = self._mix_grid(x, grid)
        if self.time_attn is not None:
            space_angles, time_angles = angles if angles is not None else (None, None)
            x = x + self.dropout(self._attend_time(self.norm_time(x), backend, time_angles, grid))
            x = x + self.dropout(self._attend_space(self.norm1(x), backend, space_angles, grid))
            return x + self.dropout(self.mlp(self.norm2(x)))
        if self.modulation is None:
            x = x + self.dropout(self.attn(self.norm1(x), backend, angles, mask))
            return x + self.dropout(self.mlp(self.norm2(x)))
        shift1, scale1, shift2, scale2 = self.modulation(F.silu(condition)).unsqueeze(1).chunk(4, dim=-1)
        x = x + self.dropout(self.attn(self.norm1(x) * (1 + scale1) + shift1, backend, angles, mask))
        return x + self.dropout(self.mlp(self.norm2(x) * (1 + scale2) + shift2))


# ----------------------------------------------------------------------------- model


class CommitTransformer(nn.Module):
    """COMMIT masked transformer (MAGVIT v1) with MAGVIT-v2 sub-token heads.

    Input: a token grid ``(B, T', H', W')`` int64 holding code ids in ``[0, codebook_size)`` or
    ``MASK_ID``; task ids ``(B,)`` (rows of ``vocab.TASK_IDS``) and class ids ``(B,)`` in
    ``[0, num_classes]`` (``num_classes`` = UNCOND). Output: :class:`TokenLogits` over code ids for the
    ``T'*H'*W'`` grid positions in raster order (prefix positions produce no logits).
    """

    MASK_ID = MASK_ID

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.export_info: TransformerExportInfo | None = None  # what its export says (from_pretrained)
        self.embed = InputEmbedding(config)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        sizes = config.sub_token_sizes
        if config.head == "tied":  # logits = h @ code_table.T + bias, one per sub-token table
            self.head_bias = nn.ParameterList(nn.Parameter(torch.zeros(size)) for size in sizes)
        else:
            self.heads = nn.ModuleList(nn.Linear(config.hidden_size, size) for size in sizes)
        self.apply(self._init_linear)
        for block in self.blocks:
            if block.modulation is not None:  # adaLN starts as the identity: the prefix model
                nn.init.zeros_(block.modulation.weight)
            if block.grid_conv is not None:  # starts as the identity too: the reference transformer
                nn.init.zeros_(block.grid_conv.weight)
                nn.init.zeros_(block.grid_conv.bias)

    def _init_linear(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ construction and files

    @classmethod
    def from_preset(cls, name: str, **overrides) -> CommitTransformer:
        """A fresh model of preset ``name`` ("tiny", "S", "B", "L") with config fields overridden."""
        return cls(from_dict(TransformerConfig, {"preset": name, **overrides}))

    def save_pretrained(self, path: str | Path, info: TransformerExportInfo | None = None) -> None:
        """Write the export folder ``path`` atomically (``videogen.export``): ``config.yaml`` with
        ``kind: transformer``, the architecture under ``model:`` and, when known, what the model was
        trained for (``info``, default :attr:`export_info`: tasks, tokenizer identity, window, classes,
        sampling defaults), and ``model.safetensors``. A loaded export saves back the same."""
        info = info if info is not None else self.export_info
        fields: dict = {"format_version": TRANSFORMER_FORMAT_VERSION, "model": to_dict(self.config)}
        if info is not None:
            info.validate()
            fields.update(info.to_fields())
        save_export(path, KIND, fields, self.state_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu") -> CommitTransformer:
        """Load an export folder written by :meth:`save_pretrained`; refuses other kinds of export.

        :attr:`export_info` is what the export says about its training (None for an export that
        records only the architecture, such as those made before ``format_version`` 2).
        """
        path = Path(path)
        data = read_export_config(path, KIND, "made by ./run.sh train transformer")
        version = data.pop("format_version", 1)
        if not isinstance(version, int) or version > TRANSFORMER_FORMAT_VERSION:
            raise UserError(
                f"transformer export '{path}' has format_version {version!r}; this videogen reads 1 to "
                f"{TRANSFORMER_FORMAT_VERSION} (update videogen)"
            )
        recorded = version >= TRANSFORMER_FORMAT_VERSION
        model_fields = data.pop("model", None) if recorded else data
        if not isinstance(model_fields, dict):
            raise UserError(f"transformer export '{path}' has no model: section in its config.yaml")
        try:
            config = from_dict(TransformerConfig, model_fields)
            info = TransformerExportInfo.from_fields(data) if recorded and data else None
        except ConfigError as e:
            raise UserError(f"transformer export '{path}': {e}") from None
        model = cls(config)
        model.export_info = info
        try:
            model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
        except RuntimeError as e:
            raise UserError(
                f"transformer export '{path}': weights do not match its config ({str(e).splitlines()[0]})"
            ) from None
        return model.to(device)

    # ------------------------------------------------------------------ properties

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def uncond_class_id(self) -> int:
        return self.config.uncond_class_id

    def attention_backend(self, device: torch.device | str | None = None) -> str:
        """The attention kernel a forward on ``device`` (default: the model's) uses."""
        device = device if device is not None else self.norm.weight.device
        backend = resolve_attention(self.config.attention, device)
        if backend == "xformers" and self.config.attention_window is not None:
            return "sdpa"  # auto: xformers takes no mask
        return backend

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ forward

    def _check_inputs(self, tokens: torch.Tensor, task_ids: torch.Tensor, class_ids: torch.Tensor) -> None:
        cfg = self.config
        if tokens.dim() != 4 or tokens.dtype != torch.int64:
            raise ValueError(
                f"tokens must be int64 (B, T', H', W'), got {tokens.dtype} {tuple(tokens.shape)}"
            )
        batch, frames, height, width = tokens.shape
        if frames > cfg.max_frames or height > cfg.max_height or width > cfg.max_width:
            raise UserError(
                f"token grid {frames}x{height}x{width} exceeds the transformer's maximum "
                f"{cfg.max_frames}x{cfg.max_height}x{cfg.max_width}; use shorter/smaller clips or a model "
                "trained with larger max_frames/max_height/max_width"
            )
        if task_ids.shape != (batch,) or class_ids.shape != (batch,):
            raise ValueError(
                f"task_ids and class_ids must be ({batch},), got {tuple(task_ids.shape)}, {tuple(class_ids.shape)}"
            )
        extremes = torch.stack(
            [tokens.min(), tokens.max(), task_ids.min(), task_ids.max(), class_ids.min(), class_ids.max()]
        )
        low, high, task_low, task_high, class_low, class_high = extremes.tolist()  # one device sync
        if low < MASK_ID or high >= cfg.codebook_size:  # MASK_ID = -1 is the only id below 0
            raise UserError(
                f"token ids span [{low}, {high}] but the transformer takes codes in [0, {cfg.codebook_size}) "
                f"or MASK_ID={MASK_ID}; the tokenizer's codebook_size must equal the transformer's"
            )
        if task_low < 0 or task_high >= cfg.num_task_tokens:
            raise ValueError(f"task ids must be in [0, {cfg.num_task_tokens}), got {task_ids.tolist()}")
        if class_low < 0 or class_high > cfg.num_classes:
            raise UserError(
                f"class ids must be in [0, {cfg.num_classes}] ({cfg.num_classes} = UNCOND), got "
                f"{class_ids.tolist()}; the model was trained with num_classes={cfg.num_classes}"
            )

    def forward(self, tokens: torch.Tensor, task_ids: torch.Tensor, class_ids: torch.Tensor) -> TokenLogits:
        """``(B, T', H', W')`` tokens, ``(B,)`` task ids, ``(B,)`` class ids -> logits ``(B, T'*H'*W', .)``."""
        self._check_inputs(tokens, task_ids, class_ids)
        backend = self.attention_backend(tokens.device)
        x = self.dropout(self.embed(tokens, task_ids, class_ids))  # (B, 2 + N, D)
        angles = None
        if self.config.rotary_positions:
            head_dim = self.config.hidden_size // self.config.num_heads
            rope = divided_angles if self.config.attention_layout == "divided" else rope_angles
            angles = rope(tuple(tokens.shape[1:]), head_dim, self.config.rope_base, 2, tokens.device)
        condition = None
        if self.config.class_input == "adaln":
            condition = self.embed.class_embedding(class_ids) + self.embed.task_embedding(task_ids)  # (B, D)
        grid = tuple(tokens.shape[1:])
        local = None
        if self.config.attention_window is not None:
            local = window_mask(grid, self.config.attention_window, 2, tokens.device)
        for i, block in enumerate(self.blocks):
            x = block(x, backend, angles, condition, grid, local if i % 2 == 0 else None)
        h = self.norm(x[:, 2:])  # (B, N, D): grid positions only
        if self.config.head == "tied":
            parts = tuple(
                F.linear(h, table.weight, bias) for table, bias in zip(self.embed.code_tables, self.head_bias)
            )
        else:
            parts = tuple(head(h) for head in self.heads)
        return TokenLogits(parts, self.config.sub_token_sizes)
