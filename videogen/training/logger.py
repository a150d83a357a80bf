"""What a person sees during training: a progress bar, TensorBoard, ``metrics.jsonl``, ``log.txt``.

Only rank 0 writes (``enabled=False`` elsewhere makes every method a no-op). Scalars are averaged
over the steps since the last log and over ranks by :class:`MetricAverager` before they get here.
Videos go to TensorBoard as image grids (rows = samples, columns = frames): ``add_video`` would
need moviepy, which is not a dependency.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from tqdm import tqdm

from videogen import atomic
from videogen.collectives import all_reduce_


def format_duration(seconds: float) -> str:
    """``754.2`` -> ``"12m34s"``; ``42.0`` -> ``"42s"``; ``3.2`` -> ``"3.2s"``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class MetricAverager:
    """Sums scalar metrics on device (no host sync per step); :meth:`reduce` averages over steps and ranks."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, torch.Tensor | float]) -> None:
        for name, value in metrics.items():
            value = value.detach().float().mean() if torch.is_tensor(value) else torch.tensor(float(value))
            if name in self.sums:
                value = self.sums[name] + value.to(self.sums[name].device)
            self.sums[name] = value
            self.counts[name] = self.counts.get(name, 0) + 1

    def reduce(self, device: torch.device) -> dict[str, float]:
        """Means since the last call, averaged over ranks (a collective when names exist; same names on every rank)."""
        names = sorted(self.sums)
        if not names:
            return {}
        means = torch.stack([self.sums[n].to(device) / self.counts[n] for n in names])
        world = torch.ones(1, device=device)
        totals = all_reduce_(torch.cat([means, world]), "sum")
        self.sums, self.counts = {}, {}
        return dict(zip(names, (totals[:-1] / totals[-1]).tolist()))


def video_grid(video: torch.Tensor, max_samples: int = 4, max_frames: int = 17) -> torch.Tensor:
    """``(B, C, T, H, W)`` in [-1, 1] (or ``(B, C, H, W)``) -> uint8 ``(B*H, T*W, 3)`` grid."""
    if video.ndim == 4:
        video = video.unsqueeze(2)
    video = video[:max_samples, :, :max_frames].detach().float().cpu()
    if video.shape[1] == 1:
        video = video.expand(-1, 3, -1, -1, -1)
    pixels = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(pixels, "b c t h w -> (b h) (t w) c")


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


class MetricsLogger:
    """Rank-0 sinks of one run directory: ``metrics.jsonl``, ``log.txt``, ``tensorboard/`` and a tqdm bar."""

    def __init__(
        self, run_dir: str | Path, enabled: bool, tensorboard: bool = True, progress_bar: bool = True
    ):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.progress_bar = progress_bar and enabled
        self._writer = None
        self._bar: tqdm | None = None
        self._jsonl = None
        self._text = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        self._text = open(self.run_dir / "log.txt", "a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when used

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def forget_after(self, step: int) -> int:
        """Resuming at ``step``: drop what was logged for later steps (lost to a kill or a crash since that
        checkpoint; they are trained again and would appear twice). ``metrics.jsonl`` keeps its records of
        steps <= ``step`` (a torn last line goes too) and TensorBoard hides its later events. Returns
        the number of records dropped."""
        if not self.enabled:
            return 0
        path = self.run_dir / "metrics.jsonl"
        self._jsonl.close()
        kept, dropped = [], 0
        for line in path.read_text().splitlines(keepends=True) if path.is_file() else []:
            try:
                record = json.loads(line)
                later = isinstance(record, dict) and record.get("step", -1) > step
            except (ValueError, TypeError):  # a line torn by the kill
                later = True
            if later:
                dropped += 1
            else:
                kept.append(line if line.endswith("\n") else line + "\n")
        if dropped:
            atomic.write_text(path, "".join(kept))
        self._jsonl = open(path, "a")
        if self._writer is not None:  # events of later steps are purged from what TensorBoard shows
            from torch.utils.tensorboard import SummaryWriter

            self._writer.close()
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=step + 1)
        return dropped

    def info(self, message: str) -> None:
        """A line for the person watching (printed above the progress bar) and for ``log.txt``."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)
        self._text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        self._text.flush()

    def start_progress(self, total: int, initial: int, desc: str = "train") -> None:
        if self.progress_bar:
            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr
            )

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def scalars(self, step: int, metrics: dict[str, float], show: tuple[str, ...] = ()) -> None:
        """Write scalars to ``metrics.jsonl`` and TensorBoard; ``show`` names go on the progress bar."""
        if not self.enabled or not metrics:
            return
        record = {"step": step, "time": round(time.time(), 3), **metrics}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(name, value, step)
        if self._bar is not None and show:
            self._bar.set_postfix({k: _fmt(metrics[k]) for k in show if k in metrics}, refresh=False)

    def video(self, step: int, tag: str, video: torch.Tensor) -> None:
        """A ``(B, C, T, H, W)`` clip batch in [-1, 1] as one grid image (rows: samples, columns: frames)."""
        if self._writer is not None:
            self._writer.add_image(tag, video_grid(video).numpy(), step, dataformats="HWC")

    def event(self, step: int, **fields: Any) -> None:
        """A non-scalar record in ``metrics.jsonl`` (e.g. ``event="resumed"``)."""
        if self.enabled:
            self._jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), **fields}) + "\n")
            self._jsonl.flush()

    def close_progress(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self.close_progress()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for handle in (self._jsonl, self._text):
            if handle is not None:
                handle.close()
        self._jsonl = self._text = None
