"""``TransformerConfig``: the COMMIT transformer's architecture, with presets tiny / S / B / L."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from videogen.config_loader import check
from videogen.transformer.vocab import TASK_FAMILIES, sub_token_sizes

MAX_SINGLE_HEAD_SIZE = 2**16
"""Largest codebook served by one output head; beyond it the vocabulary must be split."""
AUTO_SPLIT_ABOVE = 2**14
"""``sub_tokens: auto`` splits power-of-two codebooks larger than this (MAGVIT-v2: 2**18 -> 2 x 2**9)."""


@dataclass
class TransformerConfig:
    """Architecture of :class:`~videogen.transformer.CommitTransformer`.

    The token grid is ``(frames, height, width)`` latents with ids in ``[0, codebook_size)`` (from the
    tokenizer's export);
    any grid up to ``max_frames x max_height x max_width`` runs through one model (1-frame images and
    5-frame videos share every weight). ``num_classes`` real classes get ids ``0 .. num_classes - 1``;
    id ``num_classes`` is the UNCOND class.
    """

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "dropout": 0.0},
        "S": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "dropout": 0.1},
        "B": {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "dropout": 0.1},
        "L": {"hidden_size": 1024, "num_layers": 24, "num_heads": 16, "dropout": 0.1},
    }

    preset: str | None = None
    # vocabulary (from the tokenizer) and conditioning
    codebook_size: int = 2**18
    # "auto" (split power-of-two codebooks above 2**14) | "single" | "split" (two heads, MAGVIT-v2) | "bits" (one
    # 2-way head per binary digit of the code: MaskBit's bit groups of one; a code's log-prob sums its bits')
    sub_tokens: str = "auto"
    num_classes: int = 0
    num_task_tokens: int = 8  # rows of the task table: the task families plus spare slots
    # largest latent grid (frames, height, width)
    max_frames: int = 5
    max_height: int = 16
    max_width: int = 16
    # backbone
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    mlp: str = "gelu"  # "gelu" | "swiglu"
    mlp_ratio: float = 4.0
    attention: str = "auto"  # "auto" | "sdpa" | "xformers" | "math"
    head: str = "tied"  # "tied" (output = code embedding tables + bias) | "untied"
    # "table": one learned vector per code id (per sub-token) | "bits": the code's binary digits as +-1 through
    # one linear map (MaskBit's embedding-free bit tokens): codes that differ in a few bits get near vectors
    token_input: str = "table"
    # "prefix": the class is one token before the grid (MaskGIT, MAGVIT) | "every": that token, and its
    # embedding also added to every grid token's input (a class signal each position sees from step 0) |
    # "adaln": that token, and the class + task vector scales and shifts every block's layer norms (DiT's
    # adaLN; the modulation starts at zero, so training starts from the prefix model)
    class_input: str = "prefix"
    # "learned": factorized absolute vectors added to the input (pos_t + pos_h + pos_w) | "rope": 3D rotary
    # angles on every attention's queries and keys (scores depend on offsets only) | "both"
    position: str = "learned"
    # kernel of a depthwise 3D convolution over the token grid, added to every block's input (CPVT's
    # positional encoding generator, ConvNeXt-style locality): each position mixes its space-time neighbours
    # in every layer, a prior that content moves to nearby positions; 0 = none (the reference transformer)
    grid_conv: int = 0
    # radius (frames, height, width), in tokens, of the local attention window of layers 0, 2, 4, ...: a grid
    # position there attends to the prefix and to the positions within the radius on every axis (MaskViT's
    # window attention: a short, local search, such as where a moving object was a latent frame ago, is
    # what attention over all T*H*W positions learns slowest); the other layers attend globally. null = every
    # layer global (the reference transformer)
    attention_window: tuple[int, int, int] | None = None
    # "joint": every block attends over all prefix + T*H*W positions at once (the reference transformer) |
    # "divided": every block attends over time (each grid position with the same place in the other latent
    # frames), then over space (each latent frame with the prefix), then its MLP (TimeSformer's divided
    # space-time attention): T*(H*W)^2 + H*W*T^2 scores instead of (T*H*W)^2, several times less CPU time
    # per step; content reaches another place and time in two hops (and through grid_conv)
    attention_layout: str = "joint"
    rope_base: float = 100.0  # rotary frequencies base ** (-i / n) per axis: wavelengths ~6 to ~600 positions
    dropout: float = 0.0  # on embeddings and residual branches
    attention_dropout: float = 0.0  # on attention weights; > 0 makes CPU SDPA fall back to its slow math path
    init_std: float = 0.02
    layer_norm_eps: float = 1e-6
    # training objective (used by masking.commit_loss through the training loop)
    label_smoothing: float = 1e-4

    def validate(self) -> None:
        check(
            self.preset is None or self.preset in self.PRESETS,
            "preset",
            self.preset,
            f"one of {list(self.PRESETS)}",
        )
        check(
            2 <= self.codebook_size <= 2**30,
            "codebook_size",
            self.codebook_size,
            "use 2 .. 2**30 (the tokenizer's codebook_size)",
        )
        check(
            self.sub_tokens in ("auto", "single", "split", "bits"),
            "sub_tokens",
            self.sub_tokens,
            "use auto, single, split or bits",
        )
        check(
            self.split or self.sub_tokens == "bits" or self.codebook_size <= MAX_SINGLE_HEAD_SIZE,
            "sub_tokens",
            self.sub_tokens,
            f"a single head over {self.codebook_size} codes is too wide; use a power-of-two codebook "
            "(split into two sub-token heads) or a smaller one",
        )
        is_power_of_two = self.codebook_size & (self.codebook_size - 1) == 0
        check(
            not (self.split or self.sub_tokens == "bits") or (is_power_of_two and self.codebook_size >= 4),
            "sub_tokens",
            self.sub_tokens,
            f"splitting needs a power-of-two codebook of >= 4 codes, got {self.codebook_size}",
        )
        check(self.num_classes >= 0, "num_classes", self.num_classes, "use 0 (unconditional) or more")
        check(
            self.num_task_tokens >= len(TASK_FAMILIES),
            "num_task_tokens",
            self.num_task_tokens,
            f"need at least {len(TASK_FAMILIES)} (one per task family)",
        )
        for name in ("max_frames", "max_height", "max_width", "hidden_size", "num_layers", "num_heads"):
            check(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        check(
            self.hidden_size % self.num_heads == 0,
            "num_heads",
            self.num_heads,
            f"must divide hidden_size {self.hidden_size}",
        )
        check(self.mlp in ("gelu", "swiglu"), "mlp", self.mlp, "use gelu or swiglu")
        check(self.mlp_ratio > 0, "mlp_ratio", self.mlp_ratio, "must be > 0")
        check(
            self.attention in ("auto", "sdpa", "xformers", "math"),
            "attention",
            self.attention,
            "use auto, sdpa, xformers or math",
        )
        check(self.head in ("tied", "untied"), "head", self.head, "use tied or untied")
        check(self.token_input in ("table", "bits"), "token_input", self.token_input, "use table or bits")
        check(
            self.class_input in ("prefix", "every", "adaln"),
            "class_input",
            self.class_input,
            "use prefix, every or adaln",
        )
        if self.token_input == "bits":
            check(
                self.codebook_size & (self.codebook_size - 1) == 0,
                "token_input",
                self.token_input,
                f"bits needs a power-of-two codebook (LFQ / BSQ), got {self.codebook_size} codes; use table",
            )
            check(
                self.head == "untied",
                "head",
                self.head,
                "token_input=bits has no code tables to tie to: use untied",
            )
        check(
            self.position in ("learned", "rope", "both"),
            "position",
            self.position,
            "use learned, rope or both",
        )
        if self.position != "learned":
            check(
                (self.hidden_size // self.num_heads) % 2 == 0 and self.hidden_size // self.num_heads >= 8,
                "position",
                self.position,
                f"rotary positions need an even head size >= 8 (hidden_size / num_heads = "
                f"{self.hidden_size // self.num_heads})",
            )
            check(self.rope_base > 1.0, "rope_base", self.rope_base, "must be > 1")
        check(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "must be in [0, 1)")
        check(
            0.0 <= self.attention_dropout < 1.0,
            "attention_dropout",
            self.attention_dropout,
            "must be in [0, 1)",
        )
        check(
            self.grid_conv == 0 or (self.grid_conv > 0 and self.grid_conv % 2 == 1),
            "grid_conv",
            self.grid_conv,
            "use 0 (none) or an odd kernel size such as 3",
        )
        if self.attention_window is not None:
            check(
                all(r >= 0 for r in self.attention_window),
                "attention_window",
                list(self.attention_window),
                "radii (frames, height, width) must be >= 0",
            )
            check(
                self.attention != "xformers",
                "attention",
                self.attention,
                "xformers takes no attention mask: use auto or sdpa with attention_window",
            )
        check(
            self.attention_layout in ("joint", "divided"),
            "attention_layout",
            self.attention_layout,
            "use joint or divided",
        )
        if self.attention_layout == "divided":
            check(
                self.attention_window is None,
                "attention_window",
                list(self.attention_window or ()),
                "is for attention_layout=joint (divided attention is local in time and space already)",
            )
            check(
                self.class_input != "adaln",
                "class_input",
                self.class_input,
                "adaln is not implemented for attention_layout=divided; use prefix or every",
            )
        check(self.init_std > 0, "init_std", self.init_std, "must be > 0")
        check(self.layer_norm_eps > 0, "layer_norm_eps", self.layer_norm_eps, "must be > 0")
        check(0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing, "must be in [0, 1)")

    @property
    def split(self) -> bool:
        """True when code ids are embedded and predicted as two sub-tokens."""
        if self.sub_tokens == "auto":
            return (
                self.codebook_size > AUTO_SPLIT_ABOVE and self.codebook_size & (self.codebook_size - 1) == 0
            )
        return self.sub_tokens == "split"

    @property
    def sub_token_sizes(self) -> tuple[int, ...]:
        """Vocabulary of each output head, low part first: ``(codebook_size,)``, two powers of two, or
        ``(2,) * code_bits`` (one head per binary digit, lowest first)."""
        if self.sub_tokens == "bits":
            return (2,) * self.code_bits
        return sub_token_sizes(self.codebook_size, self.split)

    @property
    def code_bits(self) -> int:
        """Binary digits of a code id (``token_input: bits``)."""
        return (self.codebook_size - 1).bit_length()

    @property
    def uncond_class_id(self) -> int:
        """Class id meaning "no class" (the last row of the class table)."""
        return self.num_classes

    @property
    def learned_positions(self) -> bool:
        return self.position in ("learned", "both")

    @property
    def rotary_positions(self) -> bool:
        return self.position in ("rope", "both")

    @property
    def max_tokens(self) -> int:
        return self.max_frames * self.max_height * self.max_width
