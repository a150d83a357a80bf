"""The clip the models work on: frames per window, frame size and frame rate.

The transformer's config holds only the *largest* latent grid it accepts; what it was trained on
(and so what inference should feed it) comes, in order of precedence, from

1. explicit values (``num_frames``, ``resolution``, ``fps`` arguments / CLI flags);
2. the window its export records (``window:`` in the transformer export's ``config.yaml``);
3. the transformer's largest grid: ``1 + t * (max_frames - 1)`` frames of
   ``(max_height * s) x (max_width * s)`` pixels (t, s: the tokenizer's temporal and spatial factors),
   frame rate unknown (inputs keep theirs).

Nothing beside the export folder is read. (:func:`read_run_data_config` reads a *training run's*
config next to an export, for tools that evaluate a tokenizer run; inference does not use it.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from videogen.errors import UserError
from videogen.frame_rule import fits_frame_rule, frame_rule, latent_frames

RUN_CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class Geometry:
    """One model window: ``num_frames`` (1 + t*k) frames of ``height x width`` pixels at ``fps`` (None = unknown)."""

    num_frames: int
    height: int
    width: int
    fps: float | None
    source: str  # where the values came from, for messages

    def describe(self) -> str:
        rate = f" at {self.fps:g} fps" if self.fps else ""
        return f"{self.num_frames} frames of {self.height}x{self.width}{rate} ({self.source})"


def read_run_data_config(export_dir: str | Path | None) -> dict[str, Any]:
    """``data`` section of ``<export_dir>/../config.yaml`` (the training run's config), or ``{}``, with
    ``num_frames`` the length of the clips the run was scored on (``eval.num_frames`` where set: a run
    may train on 5-frame clips and be scored on 17).

    For tools that evaluate a tokenizer training run (its export does not record its clips); the
    pipeline never reads it."""
    if export_dir is None:
        return {}
    path = Path(export_dir).resolve().parent / RUN_CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, OSError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        return {}
    section = dict(data["data"])
    evaluation = data.get("eval")
    if isinstance(evaluation, dict) and evaluation.get("num_frames"):
        section["num_frames"] = evaluation["num_frames"]
    return section


def resolve_geometry(
    temporal_factor: int,
    spatial_factor: int,
    max_grid: tuple[int, int, int],
    window: Any = None,
    num_frames: int | None = None,
    resolution: int | tuple[int, int] | None = None,
    fps: float | None = None,
) -> Geometry:
    """The window the pipeline uses; checks that it tokenizes to a grid the transformer accepts.

    ``window``: the export's ``videogen.export.WindowGeometry`` (or None).
    """
    max_t, max_h, max_w = max_grid
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise UserError(
            f"the model's frame rate (--model-fps, fps=) = {fps!r} must be > 0 frames per second; "
            "leave it out if unknown"
        )
    source = "given" if num_frames is not None or resolution is not None else "transformer's largest grid"
    if window is not None:
        if num_frames is None:
            num_frames, source = window.num_frames, "transformer export"
        if resolution is None:
            resolution, source = (window.height, window.width), "transformer export"
        if fps is None and window.fps:
            fps = float(window.fps)
    if num_frames is None:
        num_frames = 1 + temporal_factor * (max_t - 1)
    if resolution is None:
        resolution = (max_h * spatial_factor, max_w * spatial_factor)
    height, width = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if not fits_frame_rule(num_frames, temporal_factor):
        raise UserError(
            f"window of {num_frames} frames does not suit the tokenizer: use {frame_rule(temporal_factor)} frames"
        )
    if height % spatial_factor or width % spatial_factor or min(height, width) < spatial_factor:
        raise UserError(
            f"frame size {height}x{width} is not a multiple of the tokenizer's spatial factor {spatial_factor}"
        )
    grid = (latent_frames(num_frames, temporal_factor), height // spatial_factor, width // spatial_factor)
    if grid[0] > max_t or grid[1] > max_h or grid[2] > max_w:
        raise UserError(
            f"{num_frames} frames of {height}x{width} give a {grid[0]}x{grid[1]}x{grid[2]} token grid, larger "
            f"than the transformer's maximum {max_t}x{max_h}x{max_w}; use fewer frames or a smaller size"
        )
    return Geometry(num_frames, height, width, fps if fps and fps > 0 else None, source)
