"""CommitTransformer: presets, vocabulary split, special ids, grids, backends, files, loss at init."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from videogen.config_loader import ConfigError, from_dict
from videogen.errors import UserError
from videogen.transformer import MASK_ID, CommitTransformer, TransformerConfig
from videogen.transformer.attention import window_mask
from videogen.transformer.masking import commit_loss, mix_tokens, prepare_training_inputs
from videogen.transformer.rope import axis_pairs, divided_angles, rope_angles, rotate
from videogen.transformer.vocab import TASK_IDS, merge_tokens, split_tokens

SMALL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "max_frames": 5, "max_height": 4, "max_width": 4}


def small(bits: int = 18, **overrides) -> CommitTransformer:
    torch.manual_seed(0)
    return CommitTransformer.from_preset(
        "tiny", codebook_size=2**bits, num_classes=3, **{**SMALL, **overrides}
    )


def ids(
    batch: int = 2, grid: tuple[int, int, int] = (5, 4, 4), bits: int = 18, seed: int = 0
) -> torch.Tensor:
    return torch.randint(0, 2**bits, (batch, *grid), generator=torch.Generator().manual_seed(seed))


def prefix(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((batch,), TASK_IDS["frame_prediction"]), torch.arange(batch) % 4


# ----------------------------------------------------------------------------- config and vocabulary


def test_presets() -> None:
    sizes = {
        name: (cfg["num_layers"], cfg["hidden_size"], cfg["num_heads"])
        for name, cfg in TransformerConfig.PRESETS.items()
    }
    assert sizes == {"tiny": (4, 256, 4), "S": (8, 512, 8), "B": (12, 768, 12), "L": (24, 1024, 16)}
    model = CommitTransformer.from_preset("S", codebook_size=2**18)
    assert model.config.hidden_size == 512 and len(model.blocks) == 8
    with pytest.raises(ConfigError, match="preset"):
        CommitTransformer.from_preset("XL")
    with pytest.raises(ConfigError, match="num_heads"):
        CommitTransformer.from_preset("tiny", num_heads=3)


@pytest.mark.parametrize(
    ("size", "mode", "expected"),
    [
        (2**18, "auto", (512, 512)),
        (2**14, "auto", (2**14,)),
        (2**15, "auto", (256, 128)),
        (2**10, "split", (32, 32)),
        (2**12, "bits", (2,) * 12),  # one 2-way head per binary digit (MaskBit groups of one)
        (1000, "auto", (1000,)),  # FSQ (8, 5, 5, 5): one head of its own size
        (64000, "auto", (64000,)),
    ],
)
def test_sub_token_sizes(size: int, mode: str, expected: tuple[int, ...]) -> None:
    assert TransformerConfig(codebook_size=size, sub_tokens=mode).sub_token_sizes == expected


def test_only_power_of_two_codebooks_split() -> None:
    with pytest.raises(ConfigError, match="power-of-two"):
        TransformerConfig(codebook_size=1000, sub_tokens="split").validate()
    with pytest.raises(ConfigError, match="too wide"):
        TransformerConfig(codebook_size=100_000).validate()


def test_no_single_head_over_the_full_large_vocabulary() -> None:
    with pytest.raises(ConfigError, match="sub_tokens"):
        CommitTransformer.from_preset("tiny", codebook_size=2**18, sub_tokens="single")
    model = small(18)
    widest = max(max(p.shape) for p in model.parameters())
    assert widest == 512  # the two 2**9 heads/tables; nothing 2**18 wide


def test_split_merge_round_trip() -> None:
    codes = ids(4, (5, 4, 4), 18)
    low, high = split_tokens(codes, (512, 512))
    assert torch.equal(low, codes & 511) and torch.equal(high, codes >> 9)
    assert torch.equal(merge_tokens((low, high), (512, 512)), codes)
    odd = ids(4, (1, 4, 4), 15)
    assert torch.equal(merge_tokens(split_tokens(odd, (256, 128)), (256, 128)), odd)
    everything = torch.arange(2**10)
    assert torch.equal(merge_tokens(split_tokens(everything, (32, 32)), (32, 32)), everything)
    assert split_tokens(everything, (1024,))[0] is everything


def test_bit_input_embeds_the_binary_digits_linearly() -> None:
    """token_input=bits: a code enters as its +-1 digits times one matrix, so codes one digit apart differ
    by exactly twice that digit's column, [MASK] keeps its own vector, and the model runs end to end."""
    model = small(10, token_input="bits", head="untied", sub_tokens="split")
    embed = model.embed
    assert len(embed.code_tables) == 0 and embed.bit_projection.weight.shape == (64, 10)
    codes = torch.arange(2**10)
    vectors = embed.code_embedding(codes)
    column = embed.bit_projection.weight.detach().T  # (10, D)
    for bit in (0, 3, 9):
        flipped = codes | (1 << bit)  # the digit set, from codes where it is clear
        clear = (codes & (1 << bit)) == 0
        delta = embed.code_embedding(flipped[clear]) - vectors[clear]
        torch.testing.assert_close(delta, (2 * column[bit]).expand_as(delta))
    all_signs = torch.tensor([[1.0 if (5 >> i) & 1 else -1.0 for i in range(10)]])
    torch.testing.assert_close(embed.code_embedding(torch.tensor([5])), all_signs @ column)
    assert not (vectors == embed.mask_embedding).all(-1).any()
    grid = ids(2, (2, 4, 4), 10)
    grid[0, 1] = MASK_ID
    logits = model(grid, *prefix())
    assert [part.shape for part in logits.parts] == [(2, 32, 32), (2, 32, 32)]


def test_bit_heads_predict_each_binary_digit_and_sum_their_log_probs() -> None:
    """sub_tokens=bits: one 2-way head per digit of the code (lowest first); a code's log-probability is
    the sum of its digits' log-probabilities, the cross-entropy its negative, the argmax takes each
    digit's more likely value, and samples are valid code ids."""
    with pytest.raises(ConfigError, match="power-of-two"):
        TransformerConfig(codebook_size=1000, sub_tokens="bits").validate()
    model = small(10, sub_tokens="bits", head="untied")
    grid = ids(2, (2, 4, 4), 10)
    grid[1, 0] = MASK_ID
    logits = model(grid, *prefix())
    assert logits.sizes == (2,) * 10 and [p.shape for p in logits.parts] == [(2, 32, 2)] * 10
    codes = ids(2, (2, 4, 4), 10, seed=1).flatten(1)  # (B, N)
    digit_lp = torch.stack([F.log_softmax(p, -1) for p in logits.parts], dim=2)  # (B, N, 10, 2)
    digits = (codes.unsqueeze(-1) >> torch.arange(10)) & 1  # (B, N, 10)
    expected = digit_lp.gather(-1, digits.unsqueeze(-1)).squeeze(-1).sum(-1)
    torch.testing.assert_close(logits.log_prob(codes), expected)
    torch.testing.assert_close(logits.cross_entropy(codes), -expected)
    best = (digit_lp.argmax(-1) << torch.arange(10)).sum(-1)
    assert torch.equal(logits.argmax(), best)
    drawn, _ = logits.sample(generator=torch.Generator().manual_seed(0))
    assert drawn.min() >= 0 and drawn.max() < 2**10
    tied = small(10, sub_tokens="bits")  # tied: each digit's head is its two-row input table
    assert [tuple(t.weight.shape) for t in tied.embed.code_tables] == [(2, 64)] * 10


def test_class_input_every_adds_the_class_vector_to_every_grid_position() -> None:
    """class_input=every: each grid input is the prefix model's input plus the class vector (the prefix
    keeps the class token), so changing the class moves every position's input by the difference."""
    every, prefix_only = small(10, class_input="every"), small(10)  # the same seed: the same weights
    prefix_only.load_state_dict(every.state_dict())
    grid = ids(2, (2, 4, 4), 10)
    grid[1, 0] = MASK_ID
    tasks, classes = prefix()
    with_class = every.embed(grid, tasks, classes)  # (B, 2 + N, D)
    plain = prefix_only.embed(grid, tasks, classes)
    vectors = every.embed.class_embedding(classes)  # (B, D)
    torch.testing.assert_close(with_class[:, :2], plain[:, :2])
    torch.testing.assert_close(with_class[:, 2:], plain[:, 2:] + vectors[:, None])
    other = (classes + 1) % 4
    moved = every.embed(grid, tasks, other)[:, 2:] - with_class[:, 2:]
    delta = every.embed.class_embedding(other) - vectors
    torch.testing.assert_close(moved, delta[:, None].expand_as(moved))
    assert every(grid, tasks, classes).parts[0].shape == (2, 32, 2**10)
    with pytest.raises(ConfigError, match="class_input"):
        from_dict(TransformerConfig, {"preset": "tiny", "class_input": "sum"})


def test_grid_conv_adds_each_positions_space_time_neighbours_and_leaves_the_prefix(tmp_path: Path) -> None:
    """grid_conv=3: every block's input gets a depthwise 3x3x3 convolution of the grid positions (zero
    padding at the edges), zero at the start; with a kernel that picks the previous latent frame, each
    position gains exactly the vector of the same place one frame earlier, and the task and class tokens
    are untouched."""
    model = small(10, grid_conv=3).eval()
    reference = small(10).eval()  # the convolutions start at zero: the same model as without them
    assert reference.blocks[0].grid_conv is None
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if "grid_conv" not in k})
    tasks, classes = prefix()
    grid = ids(2, (5, 4, 4), 10)
    torch.testing.assert_close(model(grid, tasks, classes).parts[0], reference(grid, tasks, classes).parts[0])
    block = model.blocks[0]
    with torch.no_grad():
        block.grid_conv.weight.zero_()
        block.grid_conv.bias.zero_()
        block.grid_conv.weight[:, 0, 0, 1, 1] = 1.0  # kernel tap (t-1, h, w)
    x = torch.randn(2, 2 + 3 * 4 * 4, 64)
    mixed = block._mix_grid(x, (3, 4, 4))
    torch.testing.assert_close(mixed[:, :2], x[:, :2])
    cells, out = x[:, 2:].view(2, 3, 16, 64), mixed[:, 2:].view(2, 3, 16, 64)
    torch.testing.assert_close(out[:, 0], cells[:, 0])  # nothing before frame 0: zero padding
    torch.testing.assert_close(out[:, 1:], cells[:, 1:] + cells[:, :-1])
    assert model(ids(2, (1, 4, 4), 10), tasks, classes).shape == (2, 16)  # images go through too
    model.save_pretrained(tmp_path / "export")
    loaded = CommitTransformer.from_pretrained(tmp_path / "export").eval()
    torch.testing.assert_close(loaded(grid, tasks, classes).parts[0], model(grid, tasks, classes).parts[0])
    with pytest.raises(ConfigError, match="grid_conv"):
        from_dict(TransformerConfig, {"preset": "tiny", "grid_conv": 2})


def test_window_attention_sees_only_neighbours_within_the_radius_in_its_layers() -> None:
    """attention_window=(t, h, w): in layers 0, 2, ... a grid position attends to the prefix and to the
    positions within the radius on every axis, nothing else; a window as large as the grid is global
    attention; math and sdpa agree under the mask."""
    tasks, classes = prefix()
    grid = ids(2, (3, 4, 4), 10)
    one_layer = small(10, num_layers=1, attention_window=(0, 1, 1)).eval()
    reference = one_layer(grid, tasks, classes).parts[0].view(2, 3, 4, 4, -1)
    for (t, h, w), inside in [
        ((0, 2, 2), True),
        ((0, 0, 0), True),
        ((0, 3, 1), False),
        ((0, 1, 3), False),
        ((1, 1, 1), False),
    ]:
        changed = grid.clone()
        changed[:, t, h, w] = (changed[:, t, h, w] + 1) % 2**10
        out = one_layer(changed, tasks, classes).parts[0].view(2, 3, 4, 4, -1)
        moved = (out[:, 0, 1, 1] - reference[:, 0, 1, 1]).abs().max().item()
        assert (moved > 1e-6) == inside, ((t, h, w), moved)  # position (0, 1, 1) and its 3x3 neighbours
    two_layers = small(10, attention_window=(0, 1, 1)).eval()
    assert two_layers.blocks[1].attn is not None
    far = grid.clone()
    far[:, 2, 3, 3] = (far[:, 2, 3, 3] + 1) % 2**10
    moved = two_layers(far, tasks, classes).parts[0] - two_layers(grid, tasks, classes).parts[0]
    assert moved.view(2, 3, 4, 4, -1)[:, 0, 0, 0].abs().max() > 1e-6  # layer 1 is global
    whole = small(10, attention_window=(2, 3, 3)).eval()
    torch.testing.assert_close(
        whole(grid, tasks, classes).parts[0], small(10).eval()(grid, tasks, classes).parts[0]
    )
    reference = two_layers(grid, tasks, classes).parts[0]
    two_layers.config.attention = "math"
    torch.testing.assert_close(two_layers(grid, tasks, classes).parts[0], reference, atol=1e-5, rtol=1e-5)
    mask = window_mask((2, 1, 3), (1, 0, 1), 2, torch.device("cpu"))
    assert mask[:2].all() and mask[:, :2].all()  # the task and class tokens see and are seen by all
    assert mask[2 + 0, 2:].tolist() == [True, True, False, True, True, False]  # (0,0,0): w <= 1, t <= 1
    for fields, words in [
        ({"attention_window": [0, -1, 1]}, "radii"),
        ({"attention_window": [1, 1, 1], "attention": "xformers"}, "xformers"),
    ]:
        with pytest.raises(ConfigError, match=words):
            from_dict(TransformerConfig, {"preset": "tiny", **fields})


def test_divided_attention_mixes_a_place_over_time_and_a_frame_over_space(tmp_path: Path) -> None:
    """attention_layout=divided: the time sublayer mixes a grid position only with its own place in the
    other latent frames (nothing to the prefix), the space sublayer only within its latent frame and the
    prefix (whose output is its mean over the frames); each is the joint attention of the same weights over
    that column or that frame; one block reaches every position in two hops; math = sdpa; round trip."""
    model = small(10, num_layers=1, position="rope", attention_layout="divided").eval()
    block, (frames, height, width) = model.blocks[0], (3, 4, 4)
    h = torch.randn(2, 2 + frames * height * width, 64, generator=torch.Generator().manual_seed(1))
    space, time = divided_angles((frames, height, width), 16, model.config.rope_base, 2, torch.device("cpu"))
    with torch.no_grad():
        by_time = block._attend_time(h, "sdpa", time, (frames, height, width))
        by_space = block._attend_space(h, "sdpa", space, (frames, height, width))
        nudged = h.clone()
        nudged[:, 2 + 1 * 16 + 2 * 4 + 3] += 1.0  # grid position (t=1, h=2, w=3)
        time_moved = (block._attend_time(nudged, "sdpa", time, (3, 4, 4)) - by_time).abs().amax(dim=(0, 2))
        space_moved = (
            (block._attend_space(nudged, "sdpa", space, (3, 4, 4)) - by_space).abs().amax(dim=(0, 2))
        )
        assert (time_moved > 1e-6).nonzero().flatten().tolist() == [2 + 11, 2 + 27, 2 + 43]  # place (2, 3)
        assert by_time[:, :2].abs().max() == 0
        assert (space_moved > 1e-6).nonzero().flatten().tolist() == [0, 1, *range(2 + 16, 2 + 32)]
        cells = h[:, 2:].view(2, frames, height * width, 64)
        column = block.time_attn(cells[:, :, 11], "sdpa", time)  # place (2, 3) over the 3 latent frames
        torch.testing.assert_close(by_time[:, 2:].view(2, frames, 16, 64)[:, :, 11], column)
        frame_angles = rope_angles((1, height, width), 16, model.config.rope_base, 2, torch.device("cpu"))
        per_frame = [
            block.attn(torch.cat([h[:, :2], cells[:, t]], 1), "sdpa", frame_angles) for t in range(3)
        ]
        torch.testing.assert_close(by_space[:, 2:].view(2, frames, 16, 64)[:, 1], per_frame[1][:, 2:])
        torch.testing.assert_close(by_space[:, :2], torch.stack([f[:, :2] for f in per_frame]).mean(0))
    tasks, classes = prefix()
    grid = ids(2, (frames, height, width), 10)
    far = grid.clone()
    far[:, 2, 3, 3] = (far[:, 2, 3, 3] + 1) % 2**10  # another frame and another place than (0, 0, 0)
    reference = model(grid, tasks, classes).parts[0]
    assert (model(far, tasks, classes).parts[0] - reference).view(2, 3, 4, 4, -1)[
        :, 0, 0, 0
    ].abs().max() > 1e-6
    assert model(grid[:, :1], tasks, classes).parts[0].shape[1] == 16  # a 1-frame grid (images) too
    model.config.attention = "math"
    torch.testing.assert_close(model(grid, tasks, classes).parts[0], reference, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "export")
    loaded = CommitTransformer.from_pretrained(tmp_path / "export").eval()
    assert loaded.config.attention_layout == "divided"
    torch.testing.assert_close(loaded(grid, tasks, classes).parts[0], reference, atol=1e-5, rtol=1e-5)
    for fields, words in [
        ({"attention_layout": "axial"}, "joint or divided"),
        ({"attention_layout": "divided", "attention_window": [1, 1, 1]}, "attention_window"),
        ({"attention_layout": "divided", "class_input": "adaln"}, "adaln"),
    ]:
        with pytest.raises(ConfigError, match=words):
            from_dict(TransformerConfig, {"preset": "tiny", **fields})


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"codebook_size": 1000}, "power-of-two"),
        ({"codebook_size": 1024, "head": "tied"}, "untied"),
    ],
)
def test_bit_input_needs_binary_codes_and_an_untied_head(fields: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        from_dict(TransformerConfig, {"preset": "tiny", "token_input": "bits", "head": "untied", **fields})


@pytest.mark.parametrize("bits", [6, 18])
def test_special_ids_never_collide_with_codes(bits: int) -> None:
    assert not 0 <= MASK_ID < 2**bits
    model = small(bits)
    embed = model.embed
    codes = torch.arange(2**bits) if bits <= 10 else torch.tensor([0, 1, 511, 512, 2**bits - 1])
    code_vectors = embed.code_embedding(codes)
    assert not (code_vectors == embed.mask_embedding).all(-1).any()  # [MASK] is no code's vector
    # task and class ids index their own tables, not the code tables
    assert embed.task_embedding.weight.data_ptr() not in {t.weight.data_ptr() for t in embed.code_tables}
    assert embed.class_embedding.num_embeddings == 4  # 3 classes + UNCOND
    tasks, classes = prefix()
    grid = ids(2, (1, 4, 4), bits)
    for bad in (2**bits, -2):
        broken = grid.clone()
        broken[0, 0, 0, 0] = bad
        with pytest.raises(UserError, match="token ids"):
            model(broken, tasks, classes)
    with pytest.raises(UserError, match="class ids"):
        model(grid, tasks, torch.tensor([0, 4]))


def test_mask_changes_the_input() -> None:
    model = small(18).eval()
    tasks, classes = prefix()
    grid = ids(2, (2, 4, 4))
    masked = grid.clone()
    masked[:, 0, 0, 0] = MASK_ID
    before, after = model(grid, tasks, classes), model(masked, tasks, classes)
    assert not torch.allclose(before.parts[0], after.parts[0])


def test_logits_cover_codes_only() -> None:
    model = small(18).eval()
    tasks, classes = prefix()
    logits = model(ids(), tasks, classes)
    assert logits.shape == (2, 80) and [p.shape[-1] for p in logits.parts] == [512, 512]
    assert logits.num_codes == 2**18
    drawn, log_prob = logits.sample(generator=torch.Generator().manual_seed(0))
    assert drawn.min() >= 0 and drawn.max() < 2**18 and (log_prob <= 0).all()
    single = small(10).eval()(ids(bits=10), tasks, classes)
    assert [p.shape[-1] for p in single.parts] == [1024]


def test_class_input_adaln_starts_as_the_prefix_model_and_modulates_every_position() -> None:
    """class_input=adaln: the modulation starts at zero, so the model equals the prefix model; a block
    scales and shifts both layer norms' outputs by a linear map of the condition vector (DiT's adaLN)."""
    adaln, prefix_only = small(10, class_input="adaln"), small(10)
    state = {k: v for k, v in adaln.state_dict().items() if "modulation" not in k}
    prefix_only.load_state_dict(state)
    grid = ids(2, (2, 4, 4), 10)
    tasks, classes = prefix()
    torch.testing.assert_close(
        adaln(grid, tasks, classes).parts[0], prefix_only(grid, tasks, classes).parts[0]
    )
    block = adaln.blocks[0]
    with torch.no_grad():
        block.modulation.weight.normal_(std=0.2)
    x, condition = torch.randn(2, 5, 64), torch.randn(2, 64)
    shift1, scale1, shift2, scale2 = block.modulation(F.silu(condition)).unsqueeze(1).chunk(4, dim=-1)
    mid = x + block.attn(block.norm1(x) * (1 + scale1) + shift1, "math")
    expected = mid + block.mlp(block.norm2(mid) * (1 + scale2) + shift2)
    torch.testing.assert_close(block(x, "math", None, condition), expected)
    assert not torch.allclose(block(x, "math", None, condition), block(x, "math", None, -condition))
    with pytest.raises(ConfigError, match="class_input"):
        from_dict(TransformerConfig, {"preset": "tiny", "class_input": "film"})


def test_rotary_scores_depend_on_the_offset_only() -> None:
    """RoPE: the score of a query at grid position p with a key at q is the same for p + s and q + s
    (any shift s along t, h or w), differs for another offset, and the prefix tokens are not rotated."""
    grid, head_dim = (4, 8, 8), 16
    angles = rope_angles(grid, head_dim, 100.0, 2, torch.device("cpu"))  # (2 + 256, 8)
    assert angles.shape == (2 + 256, head_dim // 2) and angles[:2].abs().max() == 0
    assert sum(axis_pairs(head_dim)) == head_dim // 2 and min(axis_pairs(head_dim)) >= 1

    def at(t: int, h: int, w: int) -> torch.Tensor:
        return angles[2 + (t * grid[1] + h) * grid[2] + w]

    query, key = torch.randn(2, head_dim, generator=torch.Generator().manual_seed(0))

    def score(p: tuple[int, int, int], q: tuple[int, int, int]) -> torch.Tensor:
        return rotate(query, at(*p)) @ rotate(key, at(*q))

    base = score((0, 1, 2), (1, 3, 1))
    for shift in ((1, 0, 0), (0, 2, 0), (0, 0, 3), (2, 2, 2)):
        moved = score(
            tuple(a + s for a, s in zip((0, 1, 2), shift)), tuple(a + s for a, s in zip((1, 3, 1), shift))
        )
        torch.testing.assert_close(moved, base)
    assert not torch.allclose(score((0, 1, 2), (1, 3, 2)), base)  # another offset, another score
    torch.testing.assert_close(rotate(query, at(3, 7, 7)).norm(), query.norm())  # a rotation
    torch.testing.assert_close(rotate(query, angles[0]), query)  # prefix: identity


@pytest.mark.parametrize("position", ["rope", "both"])
def test_rotary_model_sees_where_tokens_are(position: str, tmp_path: Path) -> None:
    """position=rope has no learned position vectors yet tells positions apart (a transformer without
    positions gives a permuted grid the permuted outputs); it saves and loads like any other model."""
    model = small(10, position=position).eval()
    assert hasattr(model.embed, "pos_t") == (position == "both")
    grid = ids(1, (2, 4, 4), 10)
    tasks, classes = prefix(1)
    out = model(grid, tasks, classes).parts[0][0]  # (32, 32)
    flipped = model(grid.flip(-1), tasks, classes).parts[0][0]
    unflip = flipped.view(2, 4, 4, -1).flip(2).reshape(32, -1)
    assert not torch.allclose(out, unflip, atol=1e-4)
    model.save_pretrained(tmp_path / "export")
    loaded = CommitTransformer.from_pretrained(tmp_path / "export").eval()
    torch.testing.assert_close(loaded(grid, tasks, classes).parts[0][0], out)
    with pytest.raises(ConfigError, match="position"):
        from_dict(TransformerConfig, {"preset": "tiny", "position": "sinusoidal"})
    with pytest.raises(ConfigError, match="position"):
        from_dict(
            TransformerConfig, {"preset": "tiny", "position": "rope", "hidden_size": 12, "num_heads": 4}
        )


# ----------------------------------------------------------------------------- grids, backends, files


def test_image_and_video_grids_share_one_model() -> None:
    model = small(18)
    tasks, classes = prefix()
    image = model(ids(2, (1, 4, 4)), tasks, classes)
    video = model(ids(2, (5, 4, 4)), tasks, classes)
    assert image.shape == (2, 16) and video.shape == (2, 80)
    image.parts[0].sum().backward()
    grad = model.embed.pos_t.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0  # a 1-frame grid uses time row 0 only
    assert model.embed.pos_h.grad.abs().sum() > 0
    with pytest.raises(UserError, match="exceeds"):
        model(ids(2, (6, 4, 4)), tasks, classes)


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("head", ["tied", "untied"])
def test_attention_backends_agree(mlp: str, head: str) -> None:
    model = small(12, mlp=mlp, head=head).eval()
    tasks, classes = prefix()
    grid = ids(2, (2, 4, 4), 12)
    reference = model(grid, tasks, classes).parts[0]
    model.config.attention = "math"
    torch.testing.assert_close(model(grid, tasks, classes).parts[0], reference, atol=1e-5, rtol=1e-5)
    assert model.attention_backend("cpu") == "math"
    model.config.attention = "xformers"
    with pytest.raises(UserError, match="xformers"):
        model(grid, tasks, classes)
    assert small(12).attention_backend("cpu") == "sdpa"  # "auto" on CPU


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = small(18, mlp="swiglu").eval()
    model.save_pretrained(tmp_path / "export")
    text = (tmp_path / "export" / "config.yaml").read_text()
    assert text.startswith("kind: transformer")
    loaded = CommitTransformer.from_pretrained(tmp_path / "export").eval()
    assert loaded.config == model.config
    tasks, classes = prefix()
    grid = ids()
    assert torch.equal(loaded(grid, tasks, classes).parts[1], model(grid, tasks, classes).parts[1])
    (tmp_path / "export" / "config.yaml").write_text(text.replace("kind: transformer", "kind: tokenizer"))
    with pytest.raises(UserError, match="kind 'tokenizer'"):
        CommitTransformer.from_pretrained(tmp_path / "export")
    with pytest.raises(UserError, match="not found"):
        CommitTransformer.from_pretrained(tmp_path / "missing")


# ----------------------------------------------------------------------------- loss at init and the leak guard


def _train(model: CommitTransformer, leak: bool, steps: int, bits: int) -> dict[str, float]:
    """Train on random tokens; ``leak=True`` feeds the true ids (the classic port bug)."""
    g = torch.Generator().manual_seed(1)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch, grid = 16, (1, 4, 4)
    for _ in range(steps):
        targets = torch.randint(0, 2**bits, (batch, *grid), generator=g)
        tasks = torch.full((batch,), TASK_IDS["generation"])
        classes = torch.full((batch,), model.uncond_class_id)
        no_cond = torch.zeros_like(targets, dtype=torch.bool)
        inputs = prepare_training_inputs(
            targets, targets, no_cond, tasks, classes, uncond_class_id=model.uncond_class_id, generator=g
        )
        fed = targets if leak else mix_tokens(targets, targets, no_cond, inputs.masked)
        out = commit_loss(model(fed, tasks, classes), targets, inputs.masked, inputs.cond_mask)
        optim.zero_grad()
        out.loss.backward()
        optim.step()
    return out.metrics


@pytest.mark.parametrize("bits", [6, 18])
def test_masked_loss_is_about_ln_k_at_init(bits: int) -> None:
    model = small(bits)
    targets = ids(8, (5, 4, 4), bits)
    tasks, classes = torch.zeros(8, dtype=torch.long), torch.full((8,), 3)
    cond = torch.zeros_like(targets, dtype=torch.bool)
    batch = prepare_training_inputs(
        targets, targets, cond, tasks, classes, uncond_class_id=3, generator=torch.Generator().manual_seed(0)
    )
    out = commit_loss(
        model(batch.inputs, batch.task_ids, batch.class_ids), targets, batch.masked, batch.cond_mask
    )
    assert abs(out.metrics["mask_loss"] - bits * math.log(2)) < 0.1 * bits * math.log(2)


def test_masked_loss_stays_high_on_random_tokens_unless_ids_leak() -> None:
    """Random targets are unpredictable at [MASK] positions; only a leak of the true ids lets the loss fall."""
    bits = 6
    ln_k = bits * math.log(2)
    honest = _train(small(bits), leak=False, steps=35, bits=bits)
    leaky = _train(small(bits), leak=True, steps=35, bits=bits)
    assert honest["mask_loss"] > 0.9 * ln_k
    assert honest["recons_loss"] < 0.5 * ln_k  # copying the visible tokens is learned meanwhile
    assert leaky["mask_loss"] < 0.5 * ln_k
