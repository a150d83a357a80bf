"""What the token cache encodes: the clip windows of a manifest and the COMMIT conditions of each task.

Clip windows are deterministic: with ``windows_per_clip = 1`` the centered window of
``VideoClipDataset(train=False)`` (center crop, no flip); with K > 1, K windows whose starts are evenly
spaced from the first possible start to the last. A unit is one clip window, ``u = row * K + window``.
An image manifest (``kind = "image"``, for image generation) gives one unit per image: a 1-frame clip,
short side resized and center-cropped (:class:`ImageItems`).

Each cached task gets a :class:`TaskPlan`: its builder options (condition frames), the condition-token
field it reads (tasks whose condition videos are identical share one field: frame prediction and
class-conditional frame prediction, ``outpaint`` and ``outpaint_central``; tasks without a condition
read none) and its latent condition mask. Masks depend only on the task and the grid (dynamic tasks:
on time), so they are computed once on a blank clip and checked against every encoded batch.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from videogen.data.clip_index import choose_window, fits, source_step, window_indices, window_span
from videogen.data.manifest import Manifest
from videogen.data.manifest_builder import load_manifest
from videogen.data.transforms import ClipTransform
from videogen.data.video_dataset import VideoClipDataset
from videogen.errors import UserError
from videogen.token_cache.cache_config import TokenCacheConfig
from videogen.transformer import tasks
from videogen.transformer.tasks import TASKS, build_condition, get_task
from videogen.video_io import VideoDecodeError, read_image, read_video

GENERIC_TASKS = ("outpaint", "inpaint")  # the same as their "central" variants: cached only when named


@dataclass(frozen=True)
class TaskPlan:
    """One cached task: builder options, the condition field it reads (None: no condition), its mask."""

    name: str
    options: dict
    cond_field: str | None
    mask: np.ndarray  # bool (T', H', W')


def _builder(name: str) -> tuple:
    builder = get_task(name).builder
    return (builder.func, dict(builder.keywords)) if isinstance(builder, partial) else (builder, {})


def task_options(name: str, cond_frames: int, interp_cond_frames: int) -> dict:
    """Builder options of task ``name``: condition frames for frame prediction and interpolation."""
    func, _ = _builder(name)
    if func is tasks.frame_prediction:
        return {"num_cond_frames": cond_frames}
    if func is tasks.interpolation:
        return {"num_cond_frames": interp_cond_frames}
    return {}


def condition_key(name: str, options: dict) -> str:
    """Identity of a task's condition video: its builder and every argument (defaults filled in)."""
    func, fixed = _builder(name)
    bound = inspect.signature(func).bind_partial(**fixed, **options)
    bound.apply_defaults()
    args = {k: v for k, v in bound.arguments.items() if k not in ("video", "latent_shape")}
    return f"{func.__module__}.{func.__qualname__}{json.dumps(args, sort_keys=True, default=str)}"


def plan_tasks(
    names: tuple[str, ...],
    num_frames: int,
    resolution: int,
    grid: tuple[int, int, int],
    cond_frames: int,
    interp_cond_frames: int,
) -> list[TaskPlan]:
    """Plans for ``names`` (names or codes; ``"all"`` = every task but the generic ``outpaint`` /
    ``inpaint`` that fits ``num_frames``-frame clips: image generation only for 1 frame, the
    conditioned tasks only for more). A named task that does not fit is a :class:`UserError`."""
    if num_frames > 1 and not 1 <= cond_frames < num_frames:
        raise UserError(
            f"--cond-frames {cond_frames} must be in 1..{num_frames - 1} for {num_frames}-frame clips"
        )
    if num_frames > 1 and not 1 <= 2 * interp_cond_frames < num_frames:
        raise UserError(
            f"--interp-cond-frames {interp_cond_frames} at each end leaves no frame to interpolate in "
            f"{num_frames}-frame clips"
        )
    explicit = [get_task(n).name for n in names if n != "all"]
    wanted = explicit + ([n for n in TASKS if n not in GENERIC_TASKS] if "all" in names else [])
    blank = torch.zeros(1, 3, num_frames, resolution, resolution)
    plans, fields = [], {}
    for name in dict.fromkeys(wanted):
        options = task_options(name, cond_frames, interp_cond_frames)
        try:
            mask = build_condition(name, blank, grid, **options).latent_mask[0].numpy()
        except (UserError, ValueError) as e:
            if name in explicit:
                raise UserError(f"task {name!r} cannot be cached for {num_frames}-frame clips: {e}") from None
            continue
        field = None
        if get_task(name).has_condition:
            field = fields.setdefault(condition_key(name, options), f"cond_{name}")
        plans.append(TaskPlan(name, options, field, mask))
    if not plans:
        raise UserError(f"no task of {', '.join(names)} fits {num_frames}-frame clips")
    return plans


@torch.no_grad()
def encode_batch(
    tokenizer: torch.nn.Module, videos: torch.Tensor, plans: list[TaskPlan], grid: tuple[int, int, int]
) -> dict[str, torch.Tensor]:
    """``videos (N, 3, T, H, W)`` in [-1, 1] -> ``{"tokens": .., cond_field: ..}``, int64 ``(N, T', H', W')``,
    from ONE tokenizer call over the targets and every distinct condition video (concatenated on batch).
    Raises if a task's latent mask differs from its plan's (per-task) mask."""
    parts, fields = [videos], ["tokens"]
    for plan in plans:
        condition = build_condition(plan.name, videos, grid, **plan.options)
        expected = torch.from_numpy(plan.mask).to(condition.latent_mask.device)
        if not bool((condition.latent_mask == expected).all()):
            raise RuntimeError(
                f"task {plan.name!r} gave a clip-dependent latent mask; the cache keeps one per task"
            )
        if plan.cond_field is not None and plan.cond_field not in fields:
            parts.append(condition.video)
            fields.append(plan.cond_field)
    tokens = tokenizer.tokenize(torch.cat(parts))  # ((1 + F) * N, 3, T, H, W) -> ((1 + F) * N, T', H', W')
    return dict(zip(fields, tokens.split(videos.shape[0])))


# ----------------------------------------------------------------------------- clip windows


def window_frames(clips: VideoClipDataset, row: int, window: int, windows_per_clip: int) -> np.ndarray:
    """Source frame indices of window ``window`` of clip ``row``: the centered window for K = 1, else
    the ``window``-th of K starts spaced evenly from 0 to the last start (a looped clip: its one window)."""
    if windows_per_clip == 1:
        return clips.frame_indices(row, None)
    manifest = clips.manifest
    step = source_step(float(manifest.fps[row]), clips.frame_stride, clips.target_fps)
    available = int(manifest.num_frames[row])
    last_start = available - window_span(clips.num_frames, step)
    if last_start < 0:
        indices = choose_window(available, clips.num_frames, step, "start", too_short=clips.too_short)
        if indices is None:
            raise VideoDecodeError(f"video '{manifest.paths[row]}' is too short for a clip")
        return indices
    start = round(window * last_start / (windows_per_clip - 1))
    return window_indices(start, clips.num_frames, step)


class ImageItems:
    """The images of a manifest as 1-frame clips for the cache (short side resized, center crop):
    what :func:`select_clips` gives for ``kind = "image"``, read by :class:`ClipWindows` like clips."""

    num_frames = 1

    def __init__(self, manifest: Manifest, resolution: int) -> None:
        self.manifest = manifest
        self.transform = ClipTransform(resolution, train=False, random_flip=False)

    def __len__(self) -> int:
        return len(self.manifest)


class ClipWindows(Dataset):
    """Unit ``u`` -> clip window ``(row u // K, window u % K)`` decoded (an image: row ``u``), or a
    failure (``ok`` False)."""

    def __init__(
        self, clips: VideoClipDataset | ImageItems, units: np.ndarray, windows_per_clip: int
    ) -> None:
        self.clips, self.units, self.k = clips, units, windows_per_clip

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int) -> dict:
        unit = int(self.units[i])
        row, window = divmod(unit, self.k)
        try:
            if isinstance(self.clips, ImageItems):
                frames = read_image(self.clips.manifest.paths[row])[None]  # (1, H, W, 3)
            else:
                indices = window_frames(self.clips, row, window, self.k)
                frames = read_video(self.clips.manifest.paths[row], indices, backend=self.clips.backend)
            return {"unit": unit, "video": self.clips.transform(frames, None), "ok": True, "error": ""}
        except VideoDecodeError as e:
            res = self.clips.transform.size
            video = torch.zeros(3, self.clips.num_frames, res, res)  # a placeholder, never encoded
            return {"unit": unit, "video": video, "ok": False, "error": str(e) or type(e).__name__}


def select_clips(
    manifest_path: Path, cfg: TokenCacheConfig
) -> tuple[VideoClipDataset | ImageItems, np.ndarray, dict]:
    """Evaluation-mode clips of the manifest (split and too-short filtered), their row numbers in the
    manifest, and its classes ``{"num_classes", "classes"}`` (of the whole manifest). For
    ``cfg.kind == "image"``: every image of an image manifest, as :class:`ImageItems`."""
    manifest = load_manifest(manifest_path, cfg.kind, cfg.num_workers, cfg.backend)
    classes = {"num_classes": manifest.num_classes, "classes": list(manifest.classes or []) or None}
    if cfg.kind == "image":
        return ImageItems(manifest, cfg.resolution), np.arange(len(manifest)), classes
    rows = np.arange(len(manifest))
    if cfg.split is not None and np.any(manifest.splits != ""):
        manifest.for_split(cfg.split)  # a clear DataError when the split is absent
        rows = rows[manifest.splits == cfg.split]
    chosen = manifest.select(rows)
    clips = VideoClipDataset(  # leaves out (and logs) clips too short for a window with too_short="skip"
        chosen,
        num_frames=cfg.num_frames,
        resolution=cfg.resolution,
        frame_stride=cfg.frame_stride,
        target_fps=cfg.target_fps,
        train=False,
        backend=cfg.backend,
        too_short=cfg.too_short,
    )
    if cfg.too_short == "skip":  # the same rule, to know which rows it kept
        rows = rows[fits(chosen.num_frames, chosen.fps, cfg.num_frames, cfg.frame_stride, cfg.target_fps)]
    assert len(rows) == len(clips)
    return clips, rows, classes
