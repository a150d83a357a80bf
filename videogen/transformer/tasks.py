"""COMMIT tasks: condition videos in pixel space and the latent condition mask (MAGVIT v1, DESIGN §4).

Every builder is a pure function ``builder(video, latent_shape, **options) -> TaskCondition`` where
``video`` is ``(B, 3, T, H, W)`` float in ``[-1, 1]`` and ``latent_shape = (T', H', W')`` is the
tokenizer's grid for it. The condition video keeps the condition pixels exactly and pads the rest
(edge replicate, linear blend or zeros); the frozen tokenizer turns it into condition tokens.

Latent geometry (causal tokenizer): latent frame 0 <- frame 0; latent frame j >= 1 <- frames
``tf*(j-1)+1 .. tf*j`` with ``tf = (T - 1) / (T' - 1)`` (4 for MAGVIT-v2); latent cell ``(y, x)``
<- pixels ``[sf*y, sf*(y+1)) x [sf*x, sf*(x+1))`` with ``sf = H / H'``.

Latent condition mask rule (one rule for every task, see :func:`latent_condition_mask`): a latent
position is a condition position when, in at least one of the frames it covers, *every* pixel of its
spatial footprint is a condition pixel. Temporally "any" gives frame prediction with c frames the
latent frames ``0 .. ceil((c-1)/tf)``; spatially "all" marks only cells fully outside an inpainting
hole (a cell the hole touches is generated, never conditioned on a half-zero token), and exactly the
box on the latent grid for outpainting boxes aligned to ``sf``.

Task tokens: inpainting has its own task family (``vocab.TASK_IDS["inpainting"]``), unlike MAGVIT v1's
release, which by mistake reuses the outpainting token.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from einops import rearrange

from videogen.errors import UserError
from videogen.transformer.vocab import TASK_IDS

HOLE_FILL = 0.0
"""Value of non-condition pixels for the "zeros" paddings (dynamic outpainting, inpainting holes)."""

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1) in pixels, half-open: rows y0..y1-1, cols x0..x1-1


@dataclass(frozen=True)
class TaskCondition:
    """What a task builder returns.

    video: ``(B, 3, T, H, W)`` padded condition video in ``[-1, 1]`` (condition pixels unchanged).
    pixel_mask: ``(B, T, H, W)`` bool, True where the pixel is a condition pixel.
    latent_mask: ``(B, T', H', W')`` bool, True at condition token positions.
    """

    video: torch.Tensor
    pixel_mask: torch.Tensor
    latent_mask: torch.Tensor


# ----------------------------------------------------------------------------- geometry


def latent_factors(
    video_shape: tuple[int, int, int], latent_shape: tuple[int, int, int]
) -> tuple[int, int, int]:
    """``(T, H, W)`` and ``(T', H', W')`` -> ``(temporal, height, width)`` factors; checks the causal fit."""
    frames, height, width = video_shape
    lat_frames, lat_height, lat_width = latent_shape
    if min(lat_frames, lat_height, lat_width) < 1 or height % lat_height or width % lat_width:
        raise ValueError(f"latent grid {latent_shape} does not tile a {height}x{width} frame")
    if lat_frames == 1:
        if frames != 1:
            raise ValueError(f"{frames} frames cannot map onto 1 latent frame (only a 1-frame video does)")
        temporal = 1
    else:
        temporal, rest = divmod(frames - 1, lat_frames - 1)
        if rest or temporal < 1:
            raise ValueError(
                f"{frames} frames do not map onto {lat_frames} latent frames (need 1 + k*(T'-1))"
            )
    return temporal, height // lat_height, width // lat_width


def latent_condition_mask(pixel_mask: torch.Tensor, latent_shape: tuple[int, int, int]) -> torch.Tensor:
    """``(B, T, H, W)`` bool pixel mask -> ``(B, T', H', W')`` bool latent mask.

    A latent position is True when in at least one frame it covers all pixels of its footprint are
    True (spatially "all", temporally "any"; see the module docstring).
    """
    temporal, fy, fx = latent_factors(tuple(pixel_mask.shape[1:]), latent_shape)
    cells = rearrange(pixel_mask, "b t (h fy) (w fx) -> b t h w (fy fx)", fy=fy, fx=fx).all(-1)
    first = cells[:, :1]  # latent 0 <- frame 0
    rest = rearrange(cells[:, 1:], "b (t ft) h w -> b t ft h w", ft=temporal).any(2)
    return torch.cat([first, rest], dim=1)


def _condition(
    video: torch.Tensor, pixel_mask: torch.Tensor, latent_shape: tuple[int, int, int]
) -> TaskCondition:
    pixel_mask = pixel_mask.expand(video.shape[0], *video.shape[2:]).contiguous()
    return TaskCondition(video, pixel_mask, latent_condition_mask(pixel_mask, latent_shape))


def _box_mask(video: torch.Tensor, box: Box) -> torch.Tensor:
    """``(1, T, H, W)`` bool, True inside ``box`` in every frame."""
    frames, height, width = video.shape[2:]
    y0, x0, y1, x1 = box
    mask = torch.zeros(1, frames, height, width, dtype=torch.bool, device=video.device)
    mask[:, :, y0:y1, x0:x1] = True
    return mask


def _sliding_mask(video: torch.Tensor, rows: tuple[int, int]) -> torch.Tensor:
    """``(1, T, H, W)`` bool: a W/2-wide box over ``rows`` whose left edge moves 0 -> W/2 over the frames."""
    frames, height, width = video.shape[2:]
    band = width // 2
    mask = torch.zeros(1, frames, height, width, dtype=torch.bool, device=video.device)
    for t in range(frames):
        left = round(t * (width - band) / (frames - 1)) if frames > 1 else 0
        mask[:, t, rows[0] : rows[1], left : left + band] = True
    return mask


def central_box(height: int, width: int) -> Box:
    """The central box ``H/4 .. 3H/4 x W/4 .. 3W/4`` as ``(y0, x0, y1, x1)``."""
    return height // 4, width // 4, 3 * height // 4, 3 * width // 4


def check_box(box: Box | list[int], height: int, width: int) -> Box:
    """Validate a user box ``(y0, x0, y1, x1)`` (pixels, half-open) against an ``H x W`` frame."""
    if box is None or len(box) != 4 or not all(isinstance(v, int) for v in box):
        raise UserError(f"box {box!r} must be four integers y0, x0, y1, x1 (pixels, y1/x1 exclusive)")
    y0, x0, y1, x1 = box
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise UserError(f"box {tuple(box)} must satisfy 0 <= y0 < y1 <= {height} and 0 <= x0 < x1 <= {width}")
    return y0, x0, y1, x1


# ----------------------------------------------------------------------------- builders


def frame_prediction(
    video: torch.Tensor, latent_shape: tuple[int, int, int], num_cond_frames: int = 1
) -> TaskCondition:
    """First ``num_cond_frames`` frames are the condition; later frames repeat the last condition frame."""
    frames = video.shape[2]
    if not 1 <= num_cond_frames < frames:
        raise UserError(
            f"num_cond_frames = {num_cond_frames} must be in 1..{frames - 1} for a {frames}-frame clip"
        )
    cond = video.clone()
    cond[:, :, num_cond_frames:] = video[:, :, num_cond_frames - 1 : num_cond_frames]
    mask = torch.zeros(1, *video.shape[2:], dtype=torch.bool, device=video.device)
    mask[:, :num_cond_frames] = True
    return _condition(cond, mask, latent_shape)


def interpolation(
    video: torch.Tensor, latent_shape: tuple[int, int, int], num_cond_frames: int = 1
) -> TaskCondition:
    """First and last ``num_cond_frames`` frames are the condition; frames between blend them linearly."""
    frames = video.shape[2]
    c = num_cond_frames
    if c < 1 or 2 * c >= frames:
        raise UserError(
            f"num_cond_frames = {c} per end leaves no frame to interpolate in a {frames}-frame clip"
        )
    start, end = video[:, :, c - 1 : c], video[:, :, frames - c : frames - c + 1]  # (B, 3, 1, H, W)
    span = (frames - c) - (c - 1)
    alpha = torch.arange(1, span, device=video.device, dtype=video.dtype) / span  # frames c .. T-c-1
    cond = video.clone()
    cond[:, :, c : frames - c] = start + alpha.view(1, 1, -1, 1, 1) * (end - start)
    mask = torch.zeros(1, *video.shape[2:], dtype=torch.bool, device=video.device)
    mask[:, :c] = True
    mask[:, frames - c :] = True
    return _condition(cond, mask, latent_shape)


def outpaint_region(mode: str, height: int, width: int) -> Box:
    """The kept box ``(y0, x0, y1, x1)`` of a static outpaint mode: "central" (H/4..3H/4 x W/4..3W/4),
    "vertical" (columns W/4..3W/4, full height), "horizontal" (rows H/4..3H/4, full width)."""
    boxes = {
        "central": central_box(height, width),
        "vertical": (0, width // 4, height, 3 * width // 4),
        "horizontal": (height // 4, 0, 3 * height // 4, width),
    }
    if mode not in boxes:
        raise UserError(
            f"outpaint mode {mode!r} is unknown; use central, vertical, horizontal, dynamic or box"
        )
    return boxes[mode]


def outpaint(
    video: torch.Tensor, latent_shape: tuple[int, int, int], mode: str = "central", box: Box | None = None
) -> TaskCondition:
    """Keep a region, generate the rest.

    mode: "central" (box H/4..3H/4 x W/4..3W/4), "vertical" (columns W/4..3W/4), "horizontal"
    (rows H/4..3H/4), "box" (the given ``box``): static regions, padded by edge replication;
    "dynamic": a W/2-wide full-height band sliding left to right over time, zeros outside.
    """
    height, width = video.shape[3:]
    if mode == "dynamic":
        mask = _sliding_mask(video, (0, height))
        return _condition(torch.where(mask.unsqueeze(1), video, HOLE_FILL), mask, latent_shape)
    region = check_box(box, height, width) if mode == "box" else outpaint_region(mode, height, width)
    y0, x0, y1, x1 = region
    rows = torch.arange(height, device=video.device).clamp(y0, y1 - 1)
    cols = torch.arange(width, device=video.device).clamp(x0, x1 - 1)
    cond = video[:, :, :, rows][:, :, :, :, cols]  # edge replicate outward from the box
    return _condition(cond, _box_mask(video, region), latent_shape)


def inpaint(
    video: torch.Tensor, latent_shape: tuple[int, int, int], mode: str = "central", box: Box | None = None
) -> TaskCondition:
    """Keep everything but a hole (filled with zeros), generate the hole.

    mode: "central" (hole = central box), "dynamic" (a W/2-wide box over rows H/4..3H/4 sliding left to
    right over time), "box" (hole = the given ``box``). Latent condition cells are those fully outside
    the hole.
    """
    height, width = video.shape[3:]
    if mode == "central":
        hole = _box_mask(video, central_box(height, width))
    elif mode == "dynamic":
        hole = _sliding_mask(video, (height // 4, 3 * height // 4))
    elif mode == "box":
        hole = _box_mask(video, check_box(box, height, width))
    else:
        raise UserError(f"inpaint mode {mode!r} is unknown; use central, dynamic or box")
    mask = ~hole
    return _condition(torch.where(mask.unsqueeze(1), video, HOLE_FILL), mask, latent_shape)


def no_condition(video: torch.Tensor, latent_shape: tuple[int, int, int]) -> TaskCondition:
    """No condition pixels: an all-zero condition video and an all-False latent mask."""
    mask = torch.zeros(1, *video.shape[2:], dtype=torch.bool, device=video.device)
    return _condition(torch.zeros_like(video), mask, latent_shape)


def image_generation(video: torch.Tensor, latent_shape: tuple[int, int, int]) -> TaskCondition:
    """Generation of a 1-frame video (an image); no condition."""
    if video.shape[2] != 1:
        raise UserError(f"image generation takes 1-frame videos, got {video.shape[2]} frames")
    return no_condition(video, latent_shape)


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class TaskSpec:
    """A named task: its short code, task family (-> task token), builder, and whether it uses the class.

    ``class_conditional``: the class token carries the sample's label (UNCOND when the data has none);
    otherwise the class token is UNCOND. ``has_condition``: the builder produces condition pixels.
    """

    name: str
    code: str
    family: str
    builder: Callable[..., TaskCondition]
    class_conditional: bool = False
    has_condition: bool = True

    @property
    def task_id(self) -> int:
        return TASK_IDS[self.family]


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("frame_prediction", "FP", "frame_prediction", frame_prediction),
        TaskSpec("interpolation", "FI", "interpolation", interpolation),
        TaskSpec("outpaint", "OP", "outpainting", outpaint),
        TaskSpec("outpaint_central", "OPC", "outpainting", partial(outpaint, mode="central")),
        TaskSpec("outpaint_vertical", "OPV", "outpainting", partial(outpaint, mode="vertical")),
        TaskSpec("outpaint_horizontal", "OPH", "outpainting", partial(outpaint, mode="horizontal")),
        TaskSpec("outpaint_dynamic", "OPD", "outpainting", partial(outpaint, mode="dynamic")),
        TaskSpec("inpaint", "IP", "inpainting", inpaint),
        TaskSpec("inpaint_central", "IPC", "inpainting", partial(inpaint, mode="central")),
        TaskSpec("inpaint_dynamic", "IPD", "inpainting", partial(inpaint, mode="dynamic")),
        TaskSpec(
            "class_generation", "CG", "generation", no_condition, class_conditional=True, has_condition=False
        ),
        TaskSpec(
            "class_frame_prediction", "CFP", "frame_prediction", frame_prediction, class_conditional=True
        ),
        TaskSpec("unconditional", "UG", "generation", no_condition, has_condition=False),
        TaskSpec(
            "image_generation",
            "IG",
            "generation",
            image_generation,
            class_conditional=True,
            has_condition=False,
        ),
    )
}
"""Task name -> spec. ``get_task`` also accepts the short codes (FP, FI, OPC, ..., CG, CFP, UG, IG)."""


def get_task(name: str) -> TaskSpec:
    """Look a task up by name or short code (case-insensitive for codes)."""
    if name in TASKS:
        return TASKS[name]
    for spec in TASKS.values():
        if spec.code.lower() == name.lower():
            return spec
    raise UserError(f"task {name!r} is unknown; choose from {', '.join(TASKS)}")


def build_condition(
    task: str, video: torch.Tensor, latent_shape: tuple[int, int, int], **options
) -> TaskCondition:
    """Run task ``task``'s builder on ``video`` ``(B, 3, T, H, W)`` for the latent grid ``latent_shape``."""
    if video.dim() != 5 or video.shape[1] != 3 or not video.is_floating_point():
        raise ValueError(f"video must be float (B, 3, T, H, W), got {video.dtype} {tuple(video.shape)}")
    latent_factors(tuple(video.shape[2:]), tuple(latent_shape))
    builder = get_task(task).builder
    try:
        inspect.signature(builder).bind(video, tuple(latent_shape), **options)
    except TypeError as e:
        raise UserError(f"task {task!r} does not take options {sorted(options)} ({e})") from None
    return builder(video, tuple(latent_shape), **options)
