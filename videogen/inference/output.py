"""Write a result file atomically, its format taken from the suffix (``.mp4``, ``.gif``, ``.png``, ``.jpg``).

The file is written under a temporary name in the same folder and renamed over the target only when
complete, so a failure (bad frames, a full disk, Ctrl-C) never leaves half a file and never clobbers
an existing finished output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from videogen import atomic
from videogen.errors import UserError
from videogen.video_io import write_image, write_video

VIDEO_SUFFIXES = (".mp4", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_FPS = 8.0


def check_output_path(path: str | Path, num_frames: int | None = None) -> Path:
    """Raise :class:`UserError` unless ``path`` has a suffix we can write (and an image holds 1 frame)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        raise UserError(
            f"output '{path}': unknown suffix {suffix or '(none)'}; use "
            f"{', '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)}"
        )
    if suffix in IMAGE_SUFFIXES and num_frames is not None and num_frames != 1:
        raise UserError(
            f"output '{path}' is an image but the result has {num_frames} frames; use .mp4 or .gif"
        )
    if path.exists() and path.is_dir():
        raise UserError(f"output '{path}' is a folder; give a file name")
    return path


def check_writable(path: str | Path, flag: str = "--out", folder: bool = False) -> Path:
    """Raise :class:`UserError` unless ``path`` (a file, or with ``folder=True`` a folder) can be written
    there, before any work is done: not a folder (not a file) already, and its nearest existing parent
    folder accepts new files. Writes nothing that stays."""
    path = Path(path)
    if not folder and path.is_dir():
        raise UserError(f"{flag} '{path}' is a folder; give a file name")
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{flag} '{path}' is a file; give a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} '{path}': '{parent}' is a file, not a folder; choose another {flag}")
    try:
        handle, probe = tempfile.mkstemp(dir=parent, prefix=".videogen-write-check-")
    except OSError as e:
        raise UserError(
            f"{flag} '{path}' cannot be written: folder '{parent}' refuses new files ({e.strerror}); "
            f"choose another {flag} or fix the folder's permissions"
        ) from None
    os.close(handle)
    os.unlink(probe)
    return path


def sibling_path(path: str | Path, tag: str) -> Path:
    """``pred.mp4`` + ``"sbs"`` -> ``pred.sbs.mp4`` (same folder and suffix)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{tag}{path.suffix}")


def write_output(path: str | Path, frames: np.ndarray, fps: float | None = None) -> Path:
    """Write uint8 ``(T, H, W, 3)`` frames: a video for ``.mp4``/``.gif`` (at ``fps``, default 8), the single
    frame for an image suffix. Atomic: temp file, then rename."""
    path = check_output_path(path, len(frames))
    with atomic.replacing(path) as tmp:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            write_image(tmp, frames[0])
        else:
            write_video(tmp, frames, fps or DEFAULT_FPS)
    return path
