"""Causal 3D conv: padding, causality, chunked == full, and the time-alignment bug of a popular port."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videogen.tokenizer.causal_conv import CausalConv3d, FactorizedCausalConv3d, TemporalCausalConv


def _conv(in_ch=3, out_ch=4, kernel=3, stride=1, seed=0) -> CausalConv3d:
    torch.manual_seed(seed)
    return CausalConv3d(in_ch, out_ch, kernel, stride=stride).double()


@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2), (1, 2, 2)])
@pytest.mark.parametrize("frames", [1, 2, 5, 9])
def test_output_shape(stride, frames):
    conv = _conv(stride=stride)
    y = conv(torch.randn(2, 3, frames, 8, 6, dtype=torch.float64))
    assert y.shape == (2, 4, (frames - 1) // stride[0] + 1, 8 // stride[1], 6 // stride[2])


def test_padding_is_k_minus_1_zeros_in_front_and_k_over_2_around():
    """Equal to a plain conv over the input with 2 zero frames in front and 1 zero pixel on each side."""
    conv = _conv(kernel=3)
    x = torch.randn(1, 3, 5, 6, 6, dtype=torch.float64)
    expected = F.conv3d(F.pad(x, (1, 1, 1, 1, 2, 0)), conv.weight)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("stride_t", [1, 2])
def test_output_frame_sees_exactly_frames_up_to_its_own(stride_t):
    """Output frame i depends on input frames i*s-2 .. i*s, and on frame i*s itself."""
    conv = _conv(stride=(stride_t, 1, 1))
    x = torch.randn(1, 3, 9, 5, 5, dtype=torch.float64)
    y = conv(x)
    for i in range(y.shape[2]):
        last = i * stride_t
        future = x.clone()
        future[:, :, last + 1 :] = torch.randn_like(future[:, :, last + 1 :])
        torch.testing.assert_close(conv(future)[:, :, i], y[:, :, i], rtol=0, atol=1e-12)
        own = x.clone()
        own[:, :, last] += 1.0
        assert (conv(own)[:, :, i] - y[:, :, i]).abs().max() > 1e-3


@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 1, 1), (2, 2, 2)])
@pytest.mark.parametrize("splits", [[1, 4, 4], [3, 6], [1, 1, 1, 1, 1, 1, 1, 1, 1], [2, 1, 6]])
def test_chunked_equals_full(stride, splits):
    """Feeding a clip in chunks through the cache gives the one-pass output (also for odd splits)."""
    conv = _conv(stride=stride)
    x = torch.randn(2, 3, sum(splits), 6, 6, dtype=torch.float64)
    full = conv(x)
    cache: dict = {}
    parts, start = [], 0
    for size in splits:
        parts.append(conv(x[:, :, start : start + size], cache))
        start += size
    torch.testing.assert_close(torch.cat(parts, dim=2), full, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- the alignment bug
#
# A popular port (lucidrains/magvit2-pytorch, since its PR #27) pads (temporal_factor - 1) extra zero
# frames in front of the clip and uses left-only padding of k-1 in its stride-2 time convs. The two
# together break alignment: an image's latent no longer depends on the image, and the last input
# frames never reach any latent. The invariant below must hold for our convs and fails for that variant.


class _LeftPaddedTimeConv(nn.Module):
    """A stride-2 time conv (k = 3) with ``left`` zero frames in front and none behind."""

    def __init__(self, left: int) -> None:
        super().__init__()
        self.left = left
        self.weight = nn.Parameter(torch.empty(1, 1, 3, 1, 1))

    def forward(self, x):
        return F.conv3d(F.pad(x, (0, 0, 0, 0, self.left, 0)), self.weight, stride=(2, 1, 1))


class _TemporalStack(nn.Module):
    """The temporal skeleton of an encoder: causal k=3 convs and two stride-2 time convs (17 -> 5).

    ``extra_front_frames=0, strided_left_pad=None``: ours (every conv a ``CausalConv3d``).
    ``extra_front_frames=3, strided_left_pad=2``: the port after its PR #27 (the bug).
    ``extra_front_frames=3, strided_left_pad=1``: front frames with the k - s padding they need (correct).
    """

    def __init__(self, extra_front_frames: int = 0, strided_left_pad: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)

        def strided():
            if strided_left_pad is None:
                return CausalConv3d(1, 1, (3, 1, 1), stride=(2, 1, 1))
            return _LeftPaddedTimeConv(strided_left_pad)

        layers = [CausalConv3d(1, 1, (3, 1, 1)), strided(), CausalConv3d(1, 1, (3, 1, 1)), strided()]
        layers.append(CausalConv3d(1, 1, (3, 1, 1)))
        for layer in layers:  # positive weights: a dependency can never cancel out
            nn.init.uniform_(layer.weight, 0.5, 1.0)
        self.layers = nn.ModuleList(layers)
        self.extra_front_frames = extra_front_frames

    def forward(self, x):
        x = F.pad(x, (0, 0, 0, 0, self.extra_front_frames, 0))
        for layer in self.layers:
            x = layer(x)
        return x


def alignment_violations(encode, num_frames: int, factor: int = 4) -> list[str]:
    """Latent j must depend on input frame factor*j and on no later frame; every frame must be seen."""
    x = torch.rand(1, 1, num_frames, 1, 1, dtype=torch.float64, requires_grad=True)
    latent = encode(x)
    expected = (num_frames - 1) // factor + 1
    if latent.shape[2] != expected:
        return [f"{latent.shape[2]} latent frames for {num_frames} input frames, expected {expected}"]
    problems, seen = [], torch.zeros(num_frames, dtype=torch.bool)
    for j in range(expected):
        (grad,) = torch.autograd.grad(latent[:, :, j].sum(), x, retain_graph=True)
        depends = grad[0, 0, :, 0, 0] != 0
        seen |= depends
        if not depends[factor * j]:
            problems.append(f"latent {j} does not see input frame {factor * j}")
        if depends[factor * j + 1 :].any():
            problems.append(f"latent {j} sees a frame after {factor * j}")
    if not seen.all():
        problems.append(f"input frames {torch.nonzero(~seen).flatten().tolist()} reach no latent")
    return problems


@pytest.mark.parametrize("num_frames", [1, 5, 17])
def test_our_causal_stack_is_aligned(num_frames):
    stack = _TemporalStack().double()
    assert alignment_violations(stack, num_frames) == []


@pytest.mark.parametrize("num_frames", [1, 5, 17])
def test_front_frames_with_k_minus_s_padding_are_aligned_too(num_frames):
    """The check is about alignment, not about front frames: with k - s = 1 left padding they are fine."""
    stack = _TemporalStack(extra_front_frames=3, strided_left_pad=1).double()
    assert alignment_violations(lambda x: stack(x)[:, :, -((num_frames - 1) // 4 + 1) :], num_frames) == []


@pytest.mark.parametrize("num_frames", [1, 17])
def test_alignment_check_catches_the_port_bug(num_frames):
    """Extra front frames + left-only strided padding: the invariant check must flag it."""
    buggy = _TemporalStack(extra_front_frames=3, strided_left_pad=2).double()
    buggy_encode = lambda x: buggy(x)[:, :, -((num_frames - 1) // 4 + 1) :]  # noqa: E731 - same latent count
    problems = alignment_violations(buggy_encode, num_frames)
    assert "latent 0 does not see input frame 0" in problems
    if num_frames == 17:
        assert any("reach no latent" in p for p in problems)


def test_an_image_latent_depends_on_the_image():
    stack = _TemporalStack().double()
    a, b = torch.rand(1, 1, 1, 1, 1, dtype=torch.float64), torch.rand(1, 1, 1, 1, 1, dtype=torch.float64)
    assert (stack(a) - stack(b)).abs().max() > 1e-6
    buggy = _TemporalStack(extra_front_frames=3, strided_left_pad=2).double()
    torch.testing.assert_close(buggy(a), buggy(b))  # the bug: every image gives the same latent


# ----------------------------------------------------------------------------- fast paths, (2+1)D


@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 2)])
def test_per_frame_kernel_runs_as_2d_conv_with_the_3d_result(stride):
    conv = _conv(kernel=(1, 3, 3), stride=stride)
    x = torch.randn(2, 3, 5, 8, 6, dtype=torch.float64)
    expected = F.conv3d(x, conv.weight, stride=stride, padding=(0, 1, 1))
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)
    cl = x.contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(conv(cl), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("stride_t", [1, 2])
def test_temporal_conv_equals_a_3d_conv_and_starts_as_identity(stride_t):
    torch.manual_seed(0)
    conv = TemporalCausalConv(4, 3, stride_t).double()
    x = torch.randn(2, 4, 9, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(conv(x), x[:, :, ::stride_t], rtol=0, atol=0)  # identity init
    with torch.no_grad():
        conv.weight.normal_()
    expected = F.conv3d(F.pad(x, (0, 0, 0, 0, 2, 0)), conv.weight, stride=(stride_t, 1, 1))
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("in_ch", "out_ch"), [(3, 6), (6, 3)])
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2)])
def test_factorized_conv_is_a_frame_conv_and_a_time_conv(in_ch, out_ch, stride):
    torch.manual_seed(0)
    conv = FactorizedCausalConv3d(in_ch, out_ch, 3, stride=stride).double()
    x = torch.randn(2, in_ch, 9, 8, 8, dtype=torch.float64)
    spatial = conv.spatial.weight  # (out, in, 1, 3, 3)
    at_start = F.conv3d(x[:, :, :: stride[0]], spatial, stride=(1, *stride[1:]), padding=(0, 1, 1))
    torch.testing.assert_close(conv(x), at_start, rtol=0, atol=1e-12)  # a per-frame conv at start
    with torch.no_grad():
        conv.temporal.weight.normal_()
    time_w = conv.temporal.weight
    if in_ch <= out_ch:  # time conv on the narrower side: before the frame conv here
        y = F.conv3d(F.pad(x, (0, 0, 0, 0, 2, 0)), time_w, stride=(stride[0], 1, 1))
        expected = F.conv3d(y, spatial, stride=(1, *stride[1:]), padding=(0, 1, 1))
    else:
        y = F.conv3d(x, spatial, stride=(1, *stride[1:]), padding=(0, 1, 1))
        expected = F.conv3d(F.pad(y, (0, 0, 0, 0, 2, 0)), time_w, stride=(stride[0], 1, 1))
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)
    cache: dict = {}
    parts = [conv(x[:, :, a:b], cache) for a, b in ((0, 1), (1, 5), (5, 9))]
    torch.testing.assert_close(torch.cat(parts, dim=2), conv(x), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- first-frame padding


def test_first_frame_padding_repeats_frame_0_in_front():
    """time_padding="first_frame": a plain conv over the input with frame 0 twice in front (k_t = 3)."""
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, 3, time_padding="first_frame").double()
    x = torch.randn(1, 3, 5, 6, 6, dtype=torch.float64)
    padded = torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)
    expected = F.conv3d(F.pad(padded, (1, 1, 1, 1, 0, 0)), conv.weight)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="time_padding"):
        CausalConv3d(3, 4, 3, time_padding="reflect")


@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2)])
def test_first_frame_padding_chunked_equals_full(stride):
    torch.manual_seed(0)
    conv = CausalConv3d(3, 4, 3, stride=stride, time_padding="first_frame").double()
    x = torch.randn(2, 3, 9, 6, 6, dtype=torch.float64)
    cache: dict = {}
    parts = [conv(x[:, :, :1], cache), conv(x[:, :, 1:5], cache), conv(x[:, :, 5:], cache)]
    torch.testing.assert_close(torch.cat(parts, dim=2), conv(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("conv", ["full", "factorized"])
def test_a_still_clip_has_equal_latent_frames_only_with_first_frame_padding(conv):
    """A clip whose 9 frames are one image: with frame 0 repeated in front every conv sees a still input,
    so all 3 latent frames are equal; with zeros in front (black before the clip) they are not (once the
    time convs look at earlier frames)."""
    from videogen.tokenizer.model import VideoTokenizer

    still = torch.randn(1, 3, 1, 16, 16).expand(-1, -1, 9, -1, -1).contiguous()
    latents = {}
    for padding in ("zeros", "first_frame"):
        torch.manual_seed(0)
        tokenizer = VideoTokenizer.from_preset("tiny", base_channels=16, conv=conv, time_padding=padding)
        with torch.no_grad():
            for module in tokenizer.modules():  # factorized time convs start as the identity: mix the taps
                if isinstance(module, TemporalCausalConv):
                    module.weight.add_(0.1 * torch.randn_like(module.weight))
            latents[padding] = tokenizer.eval().encode_latents(still)  # (1, C, 3, H', W')
    first = latents["first_frame"]
    assert first.shape[2] == 3
    torch.testing.assert_close(
        first[:, :, 1:], first[:, :, :1].expand_as(first[:, :, 1:]), rtol=1e-4, atol=1e-5
    )
    zeros = latents["zeros"]
    assert (zeros[:, :, 1] - zeros[:, :, 0]).abs().max() > 1e-3
