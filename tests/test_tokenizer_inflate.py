"""Image -> video inflation: the inflated video model starts as the per-frame image tokenizer."""

from __future__ import annotations

import pytest
import torch

from videogen.errors import UserError
from videogen.tokenizer import VideoTokenizer, image_config
from videogen.tokenizer.inflate import inflate_image_to_video
from videogen.tokenizer.testing import random_video, randomize_, tiny_config


def inflated(conv: str) -> tuple[VideoTokenizer, VideoTokenizer]:
    """A random image tokenizer and the video model (``conv``: full 3D or (2+1)D) inflated from it."""
    video_config = tiny_config(conv=conv)
    torch.manual_seed(3)
    image_model = randomize_(VideoTokenizer(image_config(video_config)), seed=3).double().eval()
    video_model = randomize_(VideoTokenizer(video_config), seed=4).double().eval()  # nothing may survive
    inflate_image_to_video(image_model.state_dict(), video_model)
    return image_model, video_model


@pytest.fixture(scope="module")
def models() -> tuple[VideoTokenizer, VideoTokenizer]:
    return inflated("full")


@pytest.fixture(scope="module", params=["full", "factorized"])
def any_models(request) -> tuple[VideoTokenizer, VideoTokenizer]:
    return inflated(request.param)


def test_image_config_is_per_frame():
    config = image_config(tiny_config())
    assert config.temporal_kernel_size == 1 and not any(config.temporal_downsample)
    image_model = VideoTokenizer(config)
    assert image_model.temporal_factor == 1 and image_model.latent_shape(3, 8, 8) == (3, 2, 2)


def test_inflated_weights_use_the_last_temporal_tap(models):
    image_model, video_model = models
    video_weight = video_model.encoder.conv_in.weight
    assert torch.equal(video_weight[:, :, -1], image_model.encoder.conv_in.weight[:, :, 0])
    assert video_weight[:, :, :-1].abs().sum() == 0
    upsampler = video_model.decoder.levels[0].upsample  # factors (2, 2, 2): 8x channels, image 4x
    image_up = image_model.decoder.levels[0].upsample.conv.weight[:, :, 0]  # (c * 4, C_in, 3, 3)
    video_up = upsampler.conv.weight[:, :, -1].reshape(-1, 2, 4, *image_up.shape[1:])  # (c, s_t, 4, ...)
    for t in range(2):
        assert torch.equal(video_up[:, t], image_up.reshape(-1, 4, *image_up.shape[1:]))


def test_first_frame_matches_the_image_model(any_models):
    image_model, video_model = any_models
    clip = random_video(2, 9, 8, 8)
    image_out = image_model(clip[:, :, :1])
    video_out = video_model(clip)
    assert torch.equal(video_out.tokens[:, :1], image_out.tokens)
    torch.testing.assert_close(
        video_out.reconstruction[:, :, :1], image_out.reconstruction, rtol=0, atol=1e-12
    )


def test_every_frame_is_the_image_reconstruction_of_its_latent_frame(any_models):
    """Latent j = image latent of frame 4j; output frames 4j-3..4j = image reconstruction of frame 4j."""
    image_model, video_model = any_models
    clip = random_video(1, 9, 8, 8, seed=5)
    per_frame = image_model(clip)  # the image model runs frame by frame (temporal kernel 1)
    video_out = video_model(clip)
    assert torch.equal(video_out.tokens, per_frame.tokens[:, ::4])
    for frame in range(9):
        source = 4 * ((frame + 3) // 4)
        torch.testing.assert_close(
            video_out.reconstruction[:, :, frame], per_frame.reconstruction[:, :, source], rtol=0, atol=1e-12
        )


def test_static_clip_reconstructs_every_frame_as_the_image(any_models):
    image_model, video_model = any_models
    image = random_video(1, 1, 8, 8, seed=7)
    static = image.expand(-1, -1, 9, -1, -1).contiguous()
    image_out = image_model(image)
    video_out = video_model(static)
    assert torch.equal(video_out.tokens, image_out.tokens.expand(-1, 3, -1, -1))
    expected = image_out.reconstruction.expand(-1, -1, 9, -1, -1)
    torch.testing.assert_close(video_out.reconstruction, expected, rtol=0, atol=1e-12)


def test_incompatible_image_weights_raise(models):
    image_model, _ = models
    wider = VideoTokenizer(tiny_config(base_channels=16))
    with pytest.raises(UserError, match="cannot inflate"):
        inflate_image_to_video(image_model.state_dict(), wider)
    deeper = VideoTokenizer(tiny_config(num_res_blocks=2))
    with pytest.raises(UserError, match="missing"):
        inflate_image_to_video(image_model, deeper)
