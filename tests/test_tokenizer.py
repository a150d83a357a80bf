"""VideoTokenizer: shapes, causality, image == first latent frame, chunking, round trips, files, errors."""

from __future__ import annotations

import pytest
import torch

from videogen.config_loader import ConfigError, save_config
from videogen.errors import UserError
from videogen.tokenizer import TokenizerConfig, VideoShapeError, VideoTokenizer
from videogen.tokenizer.testing import random_video, tiny_config, tiny_model

ARCHITECTURES = {
    "plain": {},
    # space-to-depth stem, then one spatial and two temporal downsamplings (still spatial /4, temporal /4)
    "patch2": {"patch_size": 2, "spatial_downsample": (True, False)},
    # (2+1)D convs (per-frame k x k, then k_t over time), with a patch stem
    "factorized": {"conv": "factorized", "patch_size": 2, "spatial_downsample": (True, False)},
}


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def model(request) -> VideoTokenizer:
    """Every causality, chunking and round-trip test below runs on each architecture option."""
    return tiny_model(**ARCHITECTURES[request.param])


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return random_video(2, 17, 8, 8)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("frames", [1, 5, 9, 17])
@pytest.mark.parametrize("size", [(16, 16), (32, 24)])
def test_tiny_preset_shapes(frames, size):
    tokenizer = _tiny_preset()
    video = random_video(1, frames, *size, dtype=torch.float32)
    tokens = tokenizer.tokenize(video)
    t, h, w = tokenizer.latent_shape(frames, *size)
    assert (t, h, w) == (1 + (frames - 1) // 4, size[0] // 4, size[1] // 4)
    assert tokens.shape == (1, t, h, w) and tokens.dtype == torch.int64
    assert 0 <= tokens.min() and tokens.max() < tokenizer.codebook_size == 1024
    video_out = tokenizer.detokenize(tokens)
    assert video_out.shape == video.shape and video_out.abs().max() <= 1


_TINY_PRESET: list[VideoTokenizer] = []


def _tiny_preset() -> VideoTokenizer:
    if not _TINY_PRESET:
        torch.manual_seed(0)
        _TINY_PRESET.append(VideoTokenizer.from_preset("tiny").eval())
    return _TINY_PRESET[0]


@pytest.mark.parametrize("preset", ["S", "B", "L"])
def test_large_preset_shapes_on_meta(preset):
    """Forward passes on the meta device (every layer's shape math, no memory or compute): all frame
    counts at two resolutions for S, the longest and shortest clip for B and L (same code path)."""
    cases = [(t, size) for t in (1, 5, 9, 17) for size in ((128, 128), (64, 96))]
    if preset != "S":
        cases = [(17, (128, 128)), (1, (64, 96))]
    with torch.device("meta"):
        tokenizer = VideoTokenizer.from_preset(preset)
        for frames, size in cases:
            out = tokenizer(torch.empty(1, 3, frames, *size))
            assert out.tokens.shape == (1, 1 + (frames - 1) // 4, size[0] // 8, size[1] // 8)
            assert out.reconstruction.shape == (1, 3, frames, *size)
    for frames in (1, 5, 9, 17):
        assert tokenizer.latent_shape(frames, 64, 96) == (1 + (frames - 1) // 4, 8, 12)
    assert (tokenizer.latent_channels, tokenizer.codebook_size) == (18, 2**18)
    assert (tokenizer.temporal_factor, tokenizer.spatial_factor) == (4, 8)


def test_b_preset_is_the_reference_net():
    with torch.device("meta"):
        tokenizer = VideoTokenizer.from_preset("B")
    assert tokenizer.latent_shape(17, 128, 128) == (5, 16, 16)
    params = sum(p.numel() for p in tokenizer.parameters())
    assert 360e6 < params < 380e6  # Open-MAGVIT2's video net has about 370M


# ----------------------------------------------------------------------------- causality


def test_encoder_latent_j_sees_frames_up_to_4j(model, clip):
    latent = model.encode_latents(clip)
    for j in range(5):
        changed = clip.clone()
        changed[:, :, 4 * j + 1 :] = random_video(2, 16 - 4 * j, 8, 8, seed=j + 10)
        torch.testing.assert_close(
            model.encode_latents(changed)[:, :, : j + 1], latent[:, :, : j + 1], rtol=0, atol=1e-12
        )
        own = clip.clone()
        own[:, :, 4 * j] = -own[:, :, 4 * j]
        assert (model.encode_latents(own)[:, :, j] - latent[:, :, j]).abs().max() > 1e-4


def test_decoder_frames_up_to_4j_depend_only_on_latents_up_to_j(model):
    codes = model.indices_to_codes(torch.randint(0, model.codebook_size, (1, 5, 2, 2)))
    video = model.decode(codes)
    for j in range(5):
        changed = codes.clone()
        changed[:, :, j + 1 :] = -changed[:, :, j + 1 :]
        torch.testing.assert_close(
            model.decode(changed)[:, :, : 4 * j + 1], video[:, :, : 4 * j + 1], rtol=0, atol=1e-12
        )
        own = codes.clone()
        own[:, :, j] = -own[:, :, j]
        frames = (
            model.decode(own)[:, :, max(0, 4 * j - 3) : 4 * j + 1]
            - video[:, :, max(0, 4 * j - 3) : 4 * j + 1]
        )
        assert (frames.abs().amax(dim=(0, 1, 3, 4)) > 1e-4).all()  # each of frames 4j-3..4j uses latent j


def test_an_image_tokenizes_to_the_first_latent_frame_of_any_video_starting_with_it(model, clip):
    image = clip[:1, :, :1]
    image_tokens = model.tokenize(image)
    assert image_tokens.shape == (1, 1, 2, 2)
    for seed in range(3):
        video = torch.cat([image, random_video(1, 8, 8, 8, seed=seed)], dim=2)
        assert torch.equal(model.tokenize(video)[:, :1], image_tokens)
        torch.testing.assert_close(
            model.encode_latents(video)[:, :, :1], model.encode_latents(image), rtol=0, atol=1e-12
        )
    other = model.tokenize(clip[1:, :, :1])
    assert not torch.equal(other, image_tokens)  # the image latent depends on the image


# ----------------------------------------------------------------------------- round trips and chunks


def test_detokenize_of_tokenize_equals_decoding_the_quantized_forward(model, clip):
    out = model(clip)
    assert torch.equal(model.tokenize(clip), out.tokens)
    assert torch.equal(model.codes_to_indices(out.quantized), out.tokens)
    assert torch.equal(model.indices_to_codes(out.tokens).to(out.quantized.dtype), out.quantized)
    torch.testing.assert_close(model.decode(out.quantized), out.reconstruction, rtol=0, atol=0)
    torch.testing.assert_close(model.detokenize(out.tokens), out.reconstruction.clamp(-1, 1), rtol=0, atol=0)
    torch.testing.assert_close(model.decode(out.tokens), out.reconstruction, rtol=0, atol=0)


@pytest.mark.parametrize("chunk_frames", [4, 8, 12])
def test_chunked_encode_equals_full(model, clip, chunk_frames):
    full = model.encode(clip)
    chunked = model.encode(clip, chunk_frames=chunk_frames)
    assert torch.equal(chunked.tokens, full.tokens)
    torch.testing.assert_close(
        model.encode_latents(clip, chunk_frames=chunk_frames), model.encode_latents(clip), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("chunk_frames", [4, 8])
def test_chunked_decode_equals_full(model, chunk_frames):
    tokens = torch.randint(0, model.codebook_size, (1, 5, 2, 2))
    torch.testing.assert_close(
        model.decode(tokens, chunk_frames=chunk_frames), model.decode(tokens), rtol=0, atol=1e-12
    )


def test_forward_gives_losses_statistics_and_gradients(clip):
    tokenizer = tiny_model(torch.float32)
    out = tokenizer(clip.float(), step=0)
    assert out.reconstruction.shape == clip.shape and out.reconstruction.dtype == torch.float32
    m = out.quantizer_metrics
    assert m["quantizer/entropy_weight"] == pytest.approx(0.3)
    torch.testing.assert_close(out.quantizer_loss, m["quantizer/commitment"] + m["quantizer/entropy_loss"])
    assert 0 < m["quantizer/batch_usage"] <= 1 and 1 <= m["quantizer/perplexity"] <= tokenizer.codebook_size
    assert 0 <= m["quantizer/per_sample_entropy"] and 0 < m["quantizer/codebook_entropy"] <= 6 * 0.6932
    (out.reconstruction.abs().mean() + out.quantizer_loss).backward()
    for name in ("encoder.conv_in.weight", "decoder.conv_out.weight", "decoder.levels.0.norm.scale.weight"):
        grad = tokenizer.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_channels_last_and_contiguous_agree(clip):
    tokenizer = tiny_model()
    reference = tokenizer(clip).reconstruction
    tokenizer.set_memory_format("contiguous")
    torch.testing.assert_close(tokenizer(clip).reconstruction, reference, rtol=0, atol=1e-12)


def test_bf16_autocast_forward_runs_with_fp32_quantizer(clip):
    tokenizer = tiny_model(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tokenizer(clip.float())
    assert out.quantizer_loss.dtype == torch.float32 and out.reconstruction.dtype == torch.float32
    assert torch.isfinite(out.reconstruction).all()


# ----------------------------------------------------------------------------- files and presets


def test_save_and_load_round_trip(tmp_path, clip):
    tokenizer = tiny_model(torch.float32)
    tokenizer.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "config.yaml").read_text().startswith("kind: tokenizer")
    loaded = VideoTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.config == tokenizer.config
    video = clip.float()
    assert torch.equal(loaded.tokenize(video), tokenizer.tokenize(video))
    assert torch.equal(loaded(video).reconstruction, tokenizer(video).reconstruction)


def test_wrong_checkpoints_raise_user_errors(tmp_path):
    save_config({"kind": "transformer", "layers": 2}, tmp_path / "other" / "config.yaml")
    with pytest.raises(UserError, match="kind 'transformer', not a tokenizer"):
        VideoTokenizer.from_pretrained(tmp_path / "other")
    with pytest.raises(UserError, match="no config.yaml"):
        VideoTokenizer.from_pretrained(tmp_path / "missing")
    tiny_model(torch.float32).save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="no model.safetensors"):
        VideoTokenizer.from_pretrained(tmp_path / "tok")
    tiny_model(torch.float32, base_channels=16).save_pretrained(tmp_path / "wide")
    save_config({"kind": "tokenizer", **_as_dict(tiny_config())}, tmp_path / "wide" / "config.yaml")
    with pytest.raises(UserError, match="do not match"):
        VideoTokenizer.from_pretrained(tmp_path / "wide")


def _as_dict(config: TokenizerConfig) -> dict:
    from videogen.config_loader import to_dict

    return to_dict(config)


def test_presets_and_overrides():
    with torch.device("meta"):
        tokenizer = VideoTokenizer.from_preset("tiny", lfq={"bits": 12}, base_channels=16, num_groups=8)
    assert tokenizer.latent_channels == 12 and tokenizer.config.base_channels == 16
    assert tokenizer.config.channel_multipliers == (1, 2, 2)  # the rest of the preset is kept
    with pytest.raises(ConfigError, match="preset"):
        VideoTokenizer.from_preset("XL")
    with pytest.raises(ConfigError, match="num_groups"):
        VideoTokenizer.from_preset("tiny", num_groups=7)
    with pytest.raises(ConfigError, match="lfq.bits"):
        TokenizerConfig(lfq=TokenizerConfig().lfq.__class__(bits=0)).validate()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 4, 16, 16), "T = 4 frames; the tokenizer needs T = 1 \\+ 4k \\(1, 5, 9, 13, ...\\)"),
        ((1, 3, 5, 18, 16), "H = 18; it must be a positive multiple of the spatial factor 4"),
        ((1, 3, 5, 16, 6), "W = 6"),
        ((1, 4, 5, 16, 16), "video has 4 channels"),
        ((3, 5, 16, 16), "shape \\(B, C, T, H, W\\)"),
    ],
)
def test_bad_video_shapes_raise(model, shape, message):
    with pytest.raises(VideoShapeError, match=message) as info:
        model.tokenize(torch.zeros(shape, dtype=torch.float64))
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)


def test_bad_tokens_and_chunks_raise(model, clip):
    with pytest.raises(VideoShapeError, match="token ids must lie in \\[0, 64\\)"):
        model.detokenize(torch.full((1, 2, 4, 4), 64))
    with pytest.raises(VideoShapeError, match="integer tensor"):
        model.detokenize(torch.zeros(1, 2, 4, 4))
    with pytest.raises(VideoShapeError, match="chunk_frames = 6"):
        model.encode(clip, chunk_frames=6)
    with pytest.raises(VideoShapeError, match="T = 8"):
        model.latent_shape(8, 16, 16)


def test_patch_stem_and_per_level_downsampling_set_the_factors():
    config = tiny_config(patch_size=4, spatial_downsample=(False, False))
    assert (config.spatial_factor, config.temporal_factor) == (4, 4)
    assert config.level_strides == ((2, 1), (2, 1))
    tokenizer = VideoTokenizer(config).eval()
    video = random_video(1, 9, 16, 24, dtype=torch.float32)
    assert tokenizer.tokenize(video).shape == (1, 3, 4, 6)
    assert (
        tokenizer.encoder.conv_in.in_channels == 3 * 16 and tokenizer.decoder.conv_out.out_channels == 3 * 16
    )
    assert tiny_config(spatial_downsample=(True, False)).spatial_factor == 2
    with pytest.raises(ConfigError, match="spatial_downsample"):
        tiny_config(spatial_downsample=(True,))
    with pytest.raises(ConfigError, match="patch_size"):
        tiny_config(patch_size=0)


@pytest.mark.parametrize("conv", ["full", "factorized"])
def test_a_1x1_encoder_gives_codes_of_their_own_patch(conv):
    """encoder_spatial_kernel_size=1 behind a 4x4 patch stem: rolling a clip by whole patches rolls its
    latents exactly (a code is a function of its own patch; the frame's norm statistics do not change
    under a roll), so the same content gets the same code anywhere. The reference 3x3 encoder mixes
    neighbours across the frame's zero-padded edge, so its latents do not follow the roll. The decoder
    keeps its 3x3 kernels."""
    clip = random_video(1, 5, 16, 24, dtype=torch.float32)
    rolled = torch.roll(clip, shifts=(4, 8), dims=(3, 4))  # one patch down, two right (wrapping)
    errors, decoder_sizes = {}, set()
    for kernel in (1, None):
        torch.manual_seed(0)
        config = tiny_config(
            patch_size=4, spatial_downsample=(False, False), conv=conv, encoder_spatial_kernel_size=kernel
        )
        tokenizer = VideoTokenizer(config).eval()
        with torch.no_grad():
            latents, moved = tokenizer.encode_latents(clip), tokenizer.encode_latents(rolled)
        errors[kernel] = (torch.roll(latents, shifts=(1, 2), dims=(3, 4)) - moved).abs().max().item()
        decoder_sizes.add(sum(p.numel() for p in tokenizer.decoder.parameters()))
    assert len(decoder_sizes) == 1
    assert errors[1] < 1e-5
    assert errors[None] > 1e-2
    with pytest.raises(ConfigError, match="encoder_spatial_kernel_size"):
        tiny_config(encoder_spatial_kernel_size=2)
