"""Read and write videos and images; convert uint8 frames <-> float videos in [-1, 1].

Frames on disk are uint8 RGB ``(T, H, W, 3)``; videos in the model are float ``(3, T, H, W)`` in
``[-1, 1]``. Two decoding backends give the same frames for H.264 files:

- ``"decord"`` (default on Linux x86_64): a ``VideoReader`` is opened per call (CPU, one thread) and
  dropped at once. A reader kept on an object hangs forked DataLoader workers, so none is ever kept.
- ``"pyav"``: seeks to the keyframe before the first wanted frame and decodes forward. Works
  everywhere PyAV has wheels; the fallback backend and the cross-check in tests.

Both read ONE contiguous range covering the wanted indices and pick frames in memory (random access
into H.264 is where decord returns wrong frames). decord 0.6 cannot return frames 16, 24, 48 or 72
pixels wide (a row-padding bug, measured); such files are read with PyAV instead. Every way a file
can fail (missing, empty, garbage, truncated, an index out of range, a decoder error at open or
mid-decode) raises :class:`VideoDecodeError`. ``.gif`` files are read and written with Pillow.

The decoders' own logging is silenced (FFmpeg's ``[mov,mp4,...] moov atom not found`` and decord's
``video_reader.cc:83: ERROR opening ...``): the :class:`VideoDecodeError` says what went wrong, in one
line, and a bad file among thousands would otherwise bury the run's output in decoder noise.
"""

from __future__ import annotations

import contextlib
import fractions
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch  # noqa: F401  (must be imported before decord: decord first segfaults with torch)

from videogen.errors import UserError

Backend = Literal["decord", "pyav"]
BACKENDS = ("decord", "pyav")
_CHUNK_BYTES = 64 * 2**20  # decoded RGB bytes per step while counting frames (probe verify)


class VideoDecodeError(UserError):
    """A video or image file cannot be read: missing, empty, not a video, truncated, or an index past its end."""


class VideoInfo(NamedTuple):
    """What a file holds. ``num_frames`` is verified by decoding when probed with ``verify=True``."""

    num_frames: int
    fps: float
    height: int
    width: int


# ----------------------------------------------------------------------------- reading


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(f"video '{path}' does not exist")
    if not path.is_file():
        raise VideoDecodeError(f"video '{path}' is not a file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"video '{path}' is empty (0 bytes)")
    try:
        open(path, "rb").close()
    except OSError as e:  # decoders report this as a failed open; say what it is
        raise VideoDecodeError(
            f"video '{path}' cannot be read ({e.strerror}); check its permissions"
        ) from None
    return path


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"video backend {backend!r} is unknown; choose from {', '.join(BACKENDS)}")


def _check_indices(indices: np.ndarray, num_frames: int, path: Path) -> None:
    if indices.ndim != 1 or len(indices) == 0:
        raise VideoDecodeError(
            f"video '{path}': indices must be a non-empty 1-D list, got shape {indices.shape}"
        )
    if indices.min() < 0 or indices.max() >= num_frames:
        bad = int(indices.min()) if indices.min() < 0 else int(indices.max())
        raise VideoDecodeError(f"video '{path}': frame index {bad} is out of range for {num_frames} frames")


def _first_line(error: BaseException) -> str:
    """``'DECORDError: av_read_frame failed ...'`` from a multi-line native error with log prefixes."""
    lines = str(error).strip().splitlines()
    text = re.sub(r"^\[[\d:]+\] \S+:\d+: (Error: )?", "", lines[-1] if lines else "")
    return f"{type(error).__name__}: {text}".strip()


def read_video(
    path: str | Path, indices: list[int] | np.ndarray | None = None, backend: Backend = "decord"
) -> np.ndarray:
    """Decode frames ``indices`` (all frames if None) of a video file.

    Returns uint8 RGB ``(len(indices), H, W, 3)`` in the requested order (repeats allowed).
    Raises :class:`VideoDecodeError` for any unreadable file or an index past the decodable end.
    """
    _check_backend(backend)
    path = _check_file(path)
    idx = None if indices is None else np.asarray(indices, dtype=np.int64)
    if path.suffix.lower() == ".gif":
        frames, _ = _read_gif(path)
        if idx is None:
            return frames
        _check_indices(idx, len(frames), path)
        return frames[idx]
    if backend == "decord":
        try:
            return _read_decord(path, idx)
        except _DecordLayoutBug:
            pass  # a decord bug for this frame width, not a broken file
    return _read_pyav(path, idx)


def _decord():
    try:
        import decord
    except ImportError:
        raise UserError("decord is not installed (no wheels for this platform); use backend 'pyav'") from None
    global _decord_quiet
    if not _decord_quiet:  # FFmpeg inside decord logs every damaged file; our error says it once
        decord.logging.set_level(decord.logging.QUIET)
        _decord_quiet = True
    return decord


_decord_quiet = False
# decord's own (dmlc) log lines, e.g. "[06:31:52] /src/video/video_reader.cc:83: ERROR opening: ..."
_DECORD_LOG_LINE = re.compile(rb"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")


@contextlib.contextmanager
def _decord_log_dropped() -> Iterator[None]:
    """Drop the lines decord's C++ code writes to file descriptor 2 while the body runs (it has no switch
    for them). The descriptor goes to a temporary file meanwhile; anything else written there (another
    thread's output) is written back to stderr afterwards."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 to redirect
        yield
        return
    try:
        capture = tempfile.TemporaryFile()
    except OSError:
        os.close(saved)
        yield
        return
    with capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(True) if not _DECORD_LOG_LINE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


def _decord_errors(decord) -> tuple[type[BaseException], ...]:
    return (RuntimeError, decord._ffi.base.DECORDError, IndexError, ValueError, OSError)


class _DecordLayoutBug(Exception):
    """decord 0.6 cannot copy frames of some widths (16, 24, 48, 72 px: row padding); PyAV reads them."""


def _raise_if_layout_bug(error: BaseException) -> None:
    if "DECORDArrayCopyFromTo" in str(error):
        raise _DecordLayoutBug(str(error)) from None


def _open_decord(path: Path):
    decord = _decord()
    try:
        with _decord_log_dropped():
            return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except _decord_errors(decord) as e:
        raise VideoDecodeError(f"video '{path}' cannot be opened ({_first_line(e)})") from None


def _read_decord(path: Path, idx: np.ndarray | None) -> np.ndarray:
    decord = _decord()
    reader = _open_decord(path)
    try:
        num_frames = len(reader)
        if num_frames == 0:
            raise VideoDecodeError(f"video '{path}' has no frames")
        if idx is None:
            idx = np.arange(num_frames)
        _check_indices(idx, num_frames, path)
        lo, hi = int(idx.min()), int(idx.max())
        try:
            frames = reader.get_batch(list(range(lo, hi + 1))).asnumpy()  # (hi-lo+1, H, W, 3)
        except _decord_errors(decord) as e:
            _raise_if_layout_bug(e)
            raise VideoDecodeError(
                f"video '{path}': frames {lo}..{hi} cannot be decoded ({_first_line(e)}); "
                "the file may be truncated"
            ) from None
    finally:
        del reader
    if len(idx) == len(frames) and lo == idx[0] and np.all(np.diff(idx) == 1):
        return frames
    return frames[idx - lo]


def _av():
    import av

    return av


def _av_errors(av) -> tuple[type[BaseException], ...]:
    return (av.FFmpegError, ValueError, OSError, IndexError, EOFError)


def _open_av(path: Path):
    av = _av()
    try:
        container = av.open(str(path))
    except _av_errors(av) as e:
        raise VideoDecodeError(f"video '{path}' cannot be opened ({_first_line(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"'{path}' has no video stream")
    stream = container.streams.video[0]
    stream.thread_count = 1
    return container, stream


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _stream_num_frames(stream, fps: float) -> int:
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None and stream.time_base is not None and fps > 0:
        return int(round(float(stream.duration * stream.time_base) * fps))
    return 0


def _read_pyav(path: Path, idx: np.ndarray | None) -> np.ndarray:
    av = _av()
    container, stream = _open_av(path)
    try:
        fps = _stream_fps(stream)
        num_frames = _stream_num_frames(stream, fps)
        if idx is None:
            if num_frames == 0:
                raise VideoDecodeError(f"video '{path}' reports no frames")
            idx = np.arange(num_frames)
        if num_frames:
            _check_indices(idx, num_frames, path)
        lo, hi = int(idx.min()), int(idx.max())
        out = None
        try:
            seek = lo > 0 and fps > 0 and stream.time_base is not None
            wanted = np.zeros(hi - lo + 1, dtype=bool)
            wanted[idx - lo] = True
            out = _pyav_range(container, stream, lo, wanted, fps, seek=seek)
            if out is None:  # the seek landed after `lo`: decode from the start instead
                container.seek(0, stream=stream, backward=True, any_frame=False)
                out = _pyav_range(container, stream, lo, wanted, fps, seek=False)
        except _av_errors(av) as e:
            raise VideoDecodeError(
                f"video '{path}': frames {lo}..{hi} cannot be decoded ({_first_line(e)}); "
                "the file may be truncated"
            ) from None
        if out is None or len(out) < hi - lo + 1:
            raise VideoDecodeError(
                f"video '{path}': frames {lo}..{hi} reach past its decodable end; the file may be truncated"
            )
    finally:
        container.close()
    return out[idx - lo]


def _pyav_range(container, stream, lo: int, wanted: np.ndarray, fps: float, seek: bool) -> np.ndarray | None:
    """Decode frames ``lo .. lo + len(wanted) - 1`` into a preallocated (len(wanted), H, W, 3) array.

    Only rows where bool ``wanted`` is set are converted to RGB (the others are decoded, as H.264
    needs, but stay unfilled); fewer rows come back if the file ends early. With ``seek`` the index
    of the first decoded frame comes from its timestamp and the frames after it are counted.
    Returns None when that first frame is already past ``lo``.
    """
    hi = lo + len(wanted) - 1
    start = stream.start_time or 0
    if seek:
        target = start + int(lo / fps / stream.time_base)
        container.seek(target, stream=stream, backward=True, any_frame=False)
    out = None
    index = -1
    filled = 0
    for frame in container.decode(stream):
        if index < 0 and seek:
            if frame.pts is None:
                return None
            index = int(round(float((frame.pts - start) * stream.time_base) * fps))
            if index > lo:
                return None
        else:
            index += 1
        if index < lo:
            continue
        if index > hi:
            break
        if out is None:
            out = np.empty((len(wanted), frame.height, frame.width, 3), dtype=np.uint8)
        if wanted[index - lo]:
            out[index - lo] = frame.to_ndarray(format="rgb24")
        filled = index - lo + 1
        if index == hi:
            break
    if out is None:
        return np.empty((0, 0, 0, 3), dtype=np.uint8)
    return out[:filled]


def _read_gif(path: Path) -> tuple[np.ndarray, int | None]:
    """Every frame of a gif and the duration of one frame in ms (None when the file gives none).

    Pillow writes a run of identical frames as one frame shown k times as long, so a frame is repeated
    by its duration over the gcd of all durations: the frames that were written (unless every frame
    was part of such a run)."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            frames, durations = [], []
            for frame in ImageSequence.Iterator(image):
                frames.append(np.asarray(frame.convert("RGB")))
                durations.append(int(frame.info.get("duration") or 0))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VideoDecodeError(f"gif '{path}' cannot be read ({_first_line(e)})") from None
    video = np.stack(frames)
    if min(durations) <= 0:
        return video, None
    frame_ms = math.gcd(*durations)
    return np.repeat(video, np.array(durations) // frame_ms, axis=0), frame_ms


# ----------------------------------------------------------------------------- probing


def probe_video(path: str | Path, backend: Backend = "decord", verify: bool = True) -> VideoInfo:
    """Frame count, fps and size of a video.

    With ``verify`` every frame is decoded and ``num_frames`` is the count that truly decodes: a
    truncated file whose index is at the start (faststart) still *reports* its full count.
    """
    _check_backend(backend)
    path = _check_file(path)
    if path.suffix.lower() == ".gif":
        frames, frame_ms = _read_gif(path)
        return VideoInfo(len(frames), 1000.0 / (frame_ms or 100), frames.shape[1], frames.shape[2])
    info = None
    if backend == "decord":
        try:
            info = _probe_decord(path, verify)
        except _DecordLayoutBug:
            pass  # a decord bug for this frame width, not a broken file
    if info is None:
        info = _probe_pyav(path, verify)
    if info.num_frames <= 0:
        raise VideoDecodeError(f"video '{path}' has no decodable frames")
    return info


def _probe_decord(path: Path, verify: bool) -> VideoInfo:
    decord = _decord()
    errors = _decord_errors(decord)
    reader = _open_decord(path)
    try:
        reported = len(reader)
        fps = float(reader.get_avg_fps())
        if reported == 0:
            raise VideoDecodeError(f"video '{path}' has no frames")
        try:
            first = reader.get_batch([0]).asnumpy()  # (1, H, W, 3)
        except errors as e:
            _raise_if_layout_bug(e)
            raise VideoDecodeError(f"video '{path}': frame 0 cannot be decoded ({_first_line(e)})") from None
        height, width = first.shape[1:3]
        if not verify:
            return VideoInfo(reported, fps, height, width)
        chunk = max(1, _CHUNK_BYTES // (height * width * 3))
        count = 0
        while count < reported:
            stop = min(reported, count + chunk)
            try:
                reader.get_batch(list(range(count, stop)))
                count = stop
            except errors:
                # a fresh reader, then frame by frame to find the first one that fails
                del reader
                reader = _open_decord(path)
                for i in range(count, stop):
                    try:
                        reader.get_batch([i])
                    except errors:
                        break
                    count = i + 1
                break
        return VideoInfo(count, fps, height, width)
    finally:
        del reader


def _probe_pyav(path: Path, verify: bool) -> VideoInfo:
    av = _av()
    container, stream = _open_av(path)
    try:
        fps = _stream_fps(stream)
        height, width = stream.codec_context.height, stream.codec_context.width
        if not verify:
            return VideoInfo(_stream_num_frames(stream, fps), fps, height, width)
        count = 0
        try:
            for _ in container.decode(stream):
                count += 1
        except _av_errors(av):
            pass  # a truncated file: the frames decoded so far are what it holds
        return VideoInfo(count, fps, height, width)
    finally:
        container.close()


# ----------------------------------------------------------------------------- writing


def _check_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    return frames


def write_video(path: str | Path, frames: np.ndarray | torch.Tensor, fps: float, crf: int = 18) -> Path:
    """Write uint8 RGB ``(T, H, W, 3)`` frames as ``.mp4`` (H.264, yuv420p, faststart) or ``.gif``.

    H.264 with yuv420p needs even sizes: an odd height or width is padded by repeating the last
    row or column. ``fps`` in frames per second; ``crf`` is the x264 quality (lower = better); a
    keyframe every second. Deterministic: the same frames give the same bytes. A gif loops forever;
    its frame duration is rounded to 10 ms.
    """
    path = Path(path)
    frames = _check_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        duration_ms = max(10, int(round(100.0 / fps)) * 10)
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
        return path
    if suffix != ".mp4":
        raise UserError(f"cannot write video '{path}': use a .mp4 or .gif file name")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:  # (T, H, W, 3) -> (T, H + H%2, W + W%2, 3)
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    av = _av()
    rate = fractions.Fraction(fps).limit_denominator(10000)
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        # x264's macroblock-tree rate control gave different bytes (and pixels) for the same frames once
        # the process had decoded with PyAV (measured, PyAV 18); without it the output is reproducible
        stream.options = {
            "crf": str(crf),
            "g": str(max(1, int(round(fps)))),
            "preset": "fast",
            "threads": "1",
            "x264-params": "mbtree=0",
        }
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ----------------------------------------------------------------------------- images


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB ``(H, W, 3)`` (grey and palette images converted, alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"image '{path}' does not exist")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VideoDecodeError(f"image '{path}' cannot be read ({_first_line(e)})") from None


def write_image(path: str | Path, image: np.ndarray | torch.Tensor) -> Path:
    """Write a uint8 RGB ``(H, W, 3)`` image; the format follows the suffix (``.png``, ``.jpg``)."""
    from PIL import Image

    path = Path(path)
    frame = _check_frames(image[None])[0]  # (H, W, 3) checked as a 1-frame clip
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path)
    return path


# ----------------------------------------------------------------------------- conversions


def to_float_video(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float32 ``(3, T, H, W)`` in ``[-1, 1]``."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)  # (T, H, W, 3) -> (3, T, H, W)


def to_uint8_frames(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """float ``(3, T, H, W)`` or ``(B, 3, T, H, W)`` in ``[-1, 1]`` -> uint8 ``(T, H, W, 3)`` or ``(B, T, H, W, 3)``.

    Values outside ``[-1, 1]`` are clamped; rounding is to the nearest level.
    """
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(video)
    if video.ndim not in (4, 5) or video.shape[-4] != 3:
        raise ValueError(f"video must be (3, T, H, W) or (B, 3, T, H, W), got {tuple(video.shape)}")
    pixels = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.movedim(-4, -1)  # (..., 3, T, H, W) -> (..., T, H, W, 3)
    return pixels.contiguous().numpy()


def side_by_side(videos: list[np.ndarray], separator: int = 2, value: int = 255) -> np.ndarray:
    """Place uint8 ``(T_i, H_i, W_i, 3)`` clips left to right: ``(T, H, sum W_i + separator * (n - 1), 3)``.

    Clips shorter than the longest repeat their last frame (so an image or a few condition frames
    sit next to a full clip); lower ones are padded with black at the bottom. The columns between
    clips are filled with ``value``.
    """
    clips = [_check_frames(v) for v in videos]
    if not clips:
        raise ValueError("side_by_side needs at least one clip")
    num_frames = max(len(c) for c in clips)
    height = max(c.shape[1] for c in clips)
    parts = []
    for i, clip in enumerate(clips):
        if len(clip) < num_frames:
            clip = np.concatenate([clip, np.repeat(clip[-1:], num_frames - len(clip), axis=0)])
        if clip.shape[1] < height:
            clip = np.pad(clip, ((0, 0), (0, height - clip.shape[1]), (0, 0), (0, 0)))
        if i:
            parts.append(np.full((num_frames, height, separator, 3), value, dtype=np.uint8))
        parts.append(clip)
    return np.concatenate(parts, axis=2)
