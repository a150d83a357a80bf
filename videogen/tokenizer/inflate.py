"""Image -> video initialization ("last-tap" inflation, as Open-MAGVIT2 and Open-Sora-Plan do it).

An image tokenizer is a ``TokenizerConfig`` with ``temporal_kernel_size=1`` and no temporal downsampling
(``videogen.tokenizer.image_config``); it tokenizes 1-frame videos, or any clip frame by frame. Its
weights inflate into the video model of the same widths:

* each 2D kernel ``(C_out, C_in, 1, k, k)`` goes into the *last* temporal tap of the causal 3D kernel
  (the tap that sees the current frame), the other taps are zero;
* an upsampler conv whose output channels grow by ``s_t`` for time (layout ``(c, s_t, s_h, s_w)``) gets
  the 2D weights repeated ``s_t`` times, so the frames it creates start identical;
* everything else (norms, adaptive-norm maps, 1x1x1 convs, biases) is copied;
* in a (2+1)D model (``conv="factorized"``) the image model's per-frame convs are the spatial halves;
  the temporal convs it lacks take the identity (current frame in, nothing from the past), which is the
  same last-tap inflation.

The inflated video model then starts as a per-frame image tokenizer: latent j is the image latent of
frame t*j (a stride-2 last-tap conv keeps every other frame) and output frames t*j - t + 1 .. t*j are
all the image reconstruction of frame t*j (frame 0: of frame 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from videogen.errors import UserError
from videogen.tokenizer.causal_conv import TemporalCausalConv
from videogen.tokenizer.model import VideoTokenizer
from videogen.tokenizer.upsample import DepthToSpaceUpsample


def _mismatch(key: str, source: torch.Tensor, target: torch.Tensor) -> UserError:
    return UserError(
        f"cannot inflate '{key}': image weight {tuple(source.shape)} does not fit video weight "
        f"{tuple(target.shape)}; build the image model with image_config(video_config)"
    )


def inflate_image_to_video(
    image_state_dict: Mapping[str, torch.Tensor] | nn.Module, video_model: VideoTokenizer
) -> VideoTokenizer:
    """Load an image tokenizer's weights into ``video_model`` (in place, returned) by last-tap inflation."""
    if isinstance(image_state_dict, nn.Module):
        image_state_dict = image_state_dict.state_dict()
    video_state = video_model.state_dict()
    temporal = {
        f"{name}.weight": module
        for name, module in video_model.named_modules()
        if isinstance(module, TemporalCausalConv)
    }
    missing = sorted(set(video_state) - set(image_state_dict) - set(temporal))
    unexpected = sorted(set(image_state_dict) - set(video_state))
    if missing or unexpected:
        raise UserError(
            f"image weights do not match the video model: missing {missing[:3]}, unexpected {unexpected[:3]} "
            "(the image model must have the same widths and depths)"
        )
    upsampler_factors = {  # the upsampler's conv weight: its own (full) or its spatial half ((2+1)D)
        f"{name}.conv.{part}weight": module.factors
        for name, module in video_model.named_modules()
        if isinstance(module, DepthToSpaceUpsample)
        for part in ("", "spatial.")
    }
    inflated = {}
    for key, target in video_state.items():
        if key in temporal and key not in image_state_dict:
            inflated[key] = temporal[key].identity_weight()
            continue
        source = image_state_dict[key].to(target.dtype)
        if source.shape == target.shape and not (source.dim() == 5 and target.shape[2] > 1):
            inflated[key] = source
            continue
        if source.dim() != 5 or source.shape[2] != 1 or source.shape[1] != target.shape[1]:
            raise _mismatch(key, source, target)
        if source.shape[3:] != target.shape[3:]:
            raise _mismatch(key, source, target)
        time_factor, space_h, space_w = upsampler_factors.get(key, (1, 1, 1))
        if source.shape[0] * time_factor != target.shape[0]:
            raise _mismatch(key, source, target)
        if time_factor > 1:
            # (c * sh * sw, ...) -> (c, 1, sh * sw, ...) -> (c, s_t, sh * sw, ...) -> (c * s_t * sh * sw, ...)
            source = source.reshape(-1, 1, space_h * space_w, *source.shape[1:])
            source = source.expand(-1, time_factor, -1, *source.shape[3:]).reshape(
                target.shape[0], *source.shape[3:]
            )
        weight = torch.zeros_like(target)
        weight[:, :, -1] = source[:, :, 0]  # the last tap sees the current frame
        inflated[key] = weight
    video_model.load_state_dict(inflated)
    return video_model
