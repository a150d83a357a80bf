"""``VideoGenPipeline``: prediction, interpolation, inpainting, outpainting and generation on uint8 frames.

    pipe = VideoGenPipeline.from_pretrained("runs/tokenizer-default/export", "runs/transformer-default/export")
    future = pipe.predict(frames, num_cond_frames=5, num_frames=33, seed=0)   # uint8 (33, H, W, 3)
    image = pipe.generate(class_id=3)                                          # uint8 (1, H, W, 3)

Inputs and outputs are uint8 RGB frames ``(T, H, W, 3)`` (an image: ``(H, W, 3)`` or ``(1, H, W, 3)``).
The model works on windows of ``num_frames`` frames of ``height x width`` pixels: the window its
export records (see ``inference.geometry``). Inputs of another size are fitted by ``resize``:
``"crop"`` (default; scale to cover, then center crop, aspect ratio kept) or ``"stretch"`` (scale each
axis); outputs have the model's size. When the model's frame rate is known (``fps``) and the input's is given, input frames
are resampled to it (nearest earlier frame). Each adaptation is reported in one line through ``log``.

Outputs start from the real condition: with ``paste_condition=True`` (default) the known frames or
pixels are pasted back into the output; with ``False`` the output is the model's own reconstruction
everywhere (MAGVIT's evaluation convention). Sampling knobs are keyword arguments, see
:class:`~videogen.inference.sampling.SamplingOptions` (``seed``, ``steps``, ``temperature``, ``top_k``,
``choice_temperature``, ``guidance_scale``, ``guidance_ramp``, ``schedule``, ``keep_condition``); the
ones not given are the export's sampling defaults: those of generation for ``generate``, those of the
tasks given part of the video (the export's ``sampling.conditioned`` over them) for the rest.

Honest tasks: the transformer's export says which tasks it was trained on (and with which
tokenizer); a use it never learned (say ``outpaint(mode="vertical")`` on a model trained on central
outpainting only, or a class for a task trained without classes) is a :class:`UserError` naming the
tasks it has, and so is a tokenizer other than its own. Every use returns the frames, or with ``output="result"`` a
:class:`~videogen.inference.result.GenerationResult` (frames, condition shown, truth, fps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videogen.devices import pick_device
from videogen.errors import UserError
from videogen.inference.engine import InferenceEngine, Window, check_outpaint_mode
from videogen.inference.exports import check_pair, check_weights
from videogen.inference.frames import (
    apply_fit,
    as_frames,
    check_frames,
    plan_fit,
    resample_indices,
)
from videogen.inference.geometry import Geometry, resolve_geometry
from videogen.inference.output import DEFAULT_FPS
from videogen.inference.result import GenerationResult, masked_condition, pad_frames
from videogen.inference.sampling import SamplingOptions
from videogen.inference.trained_tasks import TrainedTasks
from videogen.tokenizer import VideoTokenizer
from videogen.transformer import CommitTransformer
from videogen.transformer.tasks import check_box, outpaint_region
from videogen.video_io import to_float_video, to_uint8_frames

logger = logging.getLogger("videogen.pipeline")
OUTPUTS = ("frames", "result")
PLACEMENTS = ("extend", "keep")


class VideoGenPipeline:
    """A tokenizer and a COMMIT transformer behind uint8-in, uint8-out calls (see the module doc)."""

    def __init__(
        self,
        tokenizer: VideoTokenizer,
        transformer: CommitTransformer,
        device: str | torch.device | None = None,
        *,
        num_frames: int | None = None,
        resolution: int | tuple[int, int] | None = None,
        fps: float | None = None,
        resize: str = "crop",
        log: Callable[[str], Any] | None = None,
        names: tuple[str, str] | None = None,
    ) -> None:
        """``transformer``: with its ``export_info`` (what ``CommitTransformer.from_pretrained`` reads from
        an export), which must name ``tokenizer`` as its own. ``num_frames`` / ``resolution`` / ``fps``:
        the model's window (default: the export's). ``log``: where one-line notes go (default: the
        ``videogen.pipeline`` logger). ``names``: how messages name (tokenizer, transformer)."""
        device = pick_device(device)
        tok_name, tr_name = (f"'{n}'" for n in names) if names else ("(given)", "(given)")
        info = check_pair(tokenizer, transformer, tok_name, tr_name)
        trained = TrainedTasks.from_info(info, transformer.config.num_classes, tr_name)
        geometry = resolve_geometry(
            tokenizer.temporal_factor,
            tokenizer.spatial_factor,
            (transformer.config.max_frames, transformer.config.max_height, transformer.config.max_width),
            info.window,
            num_frames,
            resolution,
            fps,
        )
        plan_fit((1, 1), (geometry.height, geometry.width), resize)  # validates the mode name
        self.engine = InferenceEngine(tokenizer.to(device), transformer.to(device), geometry, trained)
        fields = SamplingOptions.__dataclass_fields__
        self.sampling_defaults = {k: v for k, v in info.sampling.items() if k in fields}
        # what differs for the tasks given part of the video (older exports: nothing)
        self.conditioned_defaults = {
            k: v for k, v in info.sampling.get("conditioned", {}).items() if k in fields
        }
        self.classes = list(info.classes) if info.classes else None
        self.sources = names or ("(given)", "(given)")
        self.resize = resize
        self.log = log or logger.info

    @classmethod
    def from_pretrained(
        cls,
        tokenizer_dir: str | Path,
        transformer_dir: str | Path,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> VideoGenPipeline:
        """Load the two export folders (``config.yaml`` + ``model.safetensors`` each; nothing beside them is
        read); a missing folder, one of the wrong kind, or a transformer trained on another tokenizer is a
        :class:`UserError`. ``kwargs`` go to the constructor."""
        device = pick_device(device)
        check_weights(tokenizer_dir, "tokenizer")
        check_weights(transformer_dir, "transformer")
        tokenizer = VideoTokenizer.from_pretrained(tokenizer_dir, map_location=device)
        transformer = CommitTransformer.from_pretrained(transformer_dir, device=device)
        kwargs.setdefault("names", (str(tokenizer_dir), str(transformer_dir)))
        return cls(tokenizer, transformer, device, **kwargs)

    # ------------------------------------------------------------------ properties

    @property
    def geometry(self) -> Geometry:
        return self.engine.geometry

    @property
    def num_frames(self) -> int:
        """Frames per model window (1 + t*k)."""
        return self.geometry.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of every output frame."""
        return self.geometry.height, self.geometry.width

    @property
    def fps(self) -> float | None:
        """The model's frame rate, when known."""
        return self.geometry.fps

    @property
    def num_classes(self) -> int:
        return self.engine.num_classes

    @property
    def trained(self) -> TrainedTasks:
        """The tasks the transformer was trained on (and how): what this pipeline can do."""
        return self.engine.trained

    @property
    def device(self) -> torch.device:
        return self.engine.device

    # ------------------------------------------------------------------ input handling

    def _fit(self, frames: np.ndarray, fps: float | None, name: str, size: tuple[int, int] | None = None):
        """Resample to the model's rate and fit to ``size`` (default: the model's frame size).

        Returns ``(frames uint8 (T', h, w, 3), fit, output fps)`` and logs one line when anything changed.
        """
        frames = check_frames(frames, name)
        notes = []
        if self.fps and fps:
            indices = resample_indices(len(frames), fps, self.fps)
            if len(indices) != len(frames):
                notes.append(f"{len(frames)} frames at {fps:g} fps -> {len(indices)} at {self.fps:g} fps")
                frames = frames[indices]
        fit = plan_fit(frames.shape[1:3], size or self.frame_size, self.resize)
        if not fit.identity:
            notes.append(fit.describe())
            frames = apply_fit(frames, fit)
        if notes:
            self.log(f"{name}: {'; '.join(notes)}")
        return frames, fit, self.fps or fps or DEFAULT_FPS

    def _float(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` -> float ``(1, 3, T, H, W)`` on the device."""
        return to_float_video(frames).unsqueeze(0).to(self.device)

    def sampling_options(self, conditioned: bool = False, **sampling: Any) -> SamplingOptions:
        """:class:`SamplingOptions` from keyword arguments; those not given are the export's defaults, for
        generation or (``conditioned``) for the tasks given part of the video."""
        defaults = {**self.sampling_defaults, **(self.conditioned_defaults if conditioned else {})}
        return SamplingOptions.from_kwargs({**defaults, **sampling})

    def _options(self, sampling: dict[str, Any], output: str, conditioned: bool = True) -> SamplingOptions:
        if output not in OUTPUTS:
            raise UserError(f"output {output!r} is unknown; use {' or '.join(OUTPUTS)}")
        return self.sampling_options(conditioned, **sampling)

    def _windows(
        self,
        frames: np.ndarray,
        run: Callable[[torch.Tensor, torch.Generator], Window],
        options: SamplingOptions,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run ``run`` on consecutive windows of uint8 ``frames``; the last is padded by repeating its last
        frame. Returns the output frames and the condition pixel mask ``(T, H, W)``, both ``len(frames)`` long."""
        size, generator = self.num_frames, options.generator()
        outputs, masks = [], []
        for start in range(0, len(frames), size):
            chunk = frames[start : start + size]
            if len(chunk) < size:  # the last window: repeat the last frame
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
            window = run(self._float(chunk), generator)
            outputs.append(to_uint8_frames(window.video[0]))
            masks.append(window.condition.pixel_mask[0].cpu().numpy())
        return np.concatenate(outputs)[: len(frames)], np.concatenate(masks)[: len(frames)]

    @staticmethod
    def _finish(result: GenerationResult, output: str) -> np.ndarray | GenerationResult:
        return result if output == "result" else result.frames

    # ------------------------------------------------------------------ uses

    @torch.no_grad()
    def predict(
        self,
        frames: np.ndarray,
        num_cond_frames: int,
        num_frames: int | None = None,
        *,
        fps: float | None = None,
        class_id: int | None = None,
        paste_condition: bool = True,
        output: str = "frames",
        **sampling: Any,
    ) -> np.ndarray | GenerationResult:
        """Continue a clip: the first ``num_cond_frames`` of ``frames`` (uint8 (T, H, W, 3), at ``fps``) are the
        condition; returns ``num_frames`` frames (default: one window) starting with them. More frames
        than a window slide: the last ``num_cond_frames`` output frames condition the next window.
        Input frames after the condition are the truth (in the result)."""
        options = self._options(sampling, output)
        self.engine.check_cond_frames(num_cond_frames)
        num_frames = self.num_frames if num_frames is None else num_frames
        if not isinstance(num_frames, int) or num_frames <= num_cond_frames:
            raise UserError(f"num_frames = {num_frames!r} must exceed the {num_cond_frames} condition frames")
        video, _, out_fps = self._fit(as_frames(frames, "input"), fps, "input")
        if len(video) < num_cond_frames:
            raise UserError(
                f"the input has {len(video)} frames (at the model's rate); {num_cond_frames} condition frames "
                "asked for: give a longer clip or fewer condition frames"
            )
        cond = video[:num_cond_frames]
        class_ids = self.engine.class_ids(class_id, 1)
        pred = self.engine.predict(self._float(cond), num_frames, class_ids, options, paste_condition)
        out = to_uint8_frames(pred[0])
        if paste_condition:
            out[:num_cond_frames] = cond
        known = np.zeros(out.shape[:3], dtype=bool)
        known[:num_cond_frames] = True
        shown = masked_condition(pad_frames(cond, num_frames), known)
        truth = video[:num_frames] if len(video) > num_cond_frames else None
        return self._finish(GenerationResult(out, shown, truth, out_fps), output)

    @torch.no_grad()
    def interpolate(
        self,
        first: np.ndarray,
        last: np.ndarray,
        num_frames: int | None = None,
        *,
        class_id: int | None = None,
        paste_condition: bool = True,
        output: str = "frames",
        **sampling: Any,
    ) -> np.ndarray | GenerationResult:
        """The frames from image ``first`` to image ``last`` (uint8 (H, W, 3); for frames, the last of
        ``first`` and the first of ``last``): ``num_frames`` frames (3 .. window, default a window)
        including both ends. Shorter than a window: the window's frames picked evenly."""
        options = self._options(sampling, output)
        num_frames = self.num_frames if num_frames is None else num_frames
        if not isinstance(num_frames, int) or not 3 <= num_frames <= self.num_frames:
            raise UserError(
                f"num_frames = {num_frames!r} for interpolation: use 3..{self.num_frames} (the model's window, "
                "both ends included)"
            )
        start, _, _ = self._fit(as_frames(first, "first image")[-1:], None, "first image")
        end, _, _ = self._fit(as_frames(last, "last image")[:1], None, "last image")
        class_ids = self.engine.class_ids(class_id, 1)
        window = self.engine.interpolate(self._float(start), self._float(end), class_ids, options)
        picks = np.round(np.linspace(0, self.num_frames - 1, num_frames)).astype(np.int64)
        out = to_uint8_frames(window.video[0])[picks]
        if paste_condition:
            out[0], out[-1] = start[0], end[0]
        known = np.zeros(out.shape[:3], dtype=bool)
        known[0] = known[-1] = True
        shown = masked_condition(np.concatenate([start, np.repeat(end, num_frames - 1, axis=0)]), known)
        return self._finish(GenerationResult(out, shown, None, self.fps or DEFAULT_FPS), output)

    @torch.no_grad()
    def inpaint(
        self,
        video: np.ndarray,
        box: tuple[int, int, int, int],
        *,
        fps: float | None = None,
        class_id: int | None = None,
        paste_condition: bool = True,
        output: str = "frames",
        **sampling: Any,
    ) -> np.ndarray | GenerationResult:
        """Regenerate ``box`` = (y0, x0, y1, x1) (pixels of the *input* frames, y1/x1 exclusive) in every
        frame of ``video`` (uint8 (T, H, W, 3)); clips longer than a window go window by window."""
        options = self._options(sampling, output)
        video = as_frames(video, "input")
        box = check_box(
            None if box is None else tuple(int(v) if isinstance(v, np.integer) else v for v in box),
            *video.shape[1:3],
        )
        frames, fit, out_fps = self._fit(video, fps, "input")
        model_box = fit.map_box(box)
        class_ids = self.engine.class_ids(class_id, 1)
        out, known = self._windows(
            frames, lambda x, g: self.engine.inpaint(x, model_box, class_ids, options, g), options
        )
        if paste_condition:
            out = np.where(known[..., None], frames, out)
        result = GenerationResult(out, masked_condition(frames, known), frames, out_fps)
        return self._finish(result, output)

    @torch.no_grad()
    def outpaint(
        self,
        video: np.ndarray,
        mode: str = "central",
        *,
        placement: str = "extend",
        fps: float | None = None,
        class_id: int | None = None,
        paste_condition: bool = True,
        output: str = "frames",
        **sampling: Any,
    ) -> np.ndarray | GenerationResult:
        """Generate around a known region. ``mode``: "central" (box H/4..3H/4 x W/4..3W/4), "vertical"
        (columns W/4..3W/4, full height), "horizontal" (rows H/4..3H/4, full width), "dynamic" (a
        sliding half-width band; ``placement="keep"`` only).

        ``placement="extend"`` (default): the whole input is fitted into the region and the model draws
        the rest, so the output shows more than the input (vertical: wider, horizontal: taller).
        ``"keep"``: the input is fitted to the full frame, only its region is kept and the rest is
        redrawn (MAGVIT's benchmark setting; the input is the truth).
        """
        options = self._options(sampling, output)
        check_outpaint_mode(mode)
        if placement not in PLACEMENTS:
            raise UserError(f"outpaint placement {placement!r} is unknown; use {' or '.join(PLACEMENTS)}")
        height, width = self.frame_size
        video = as_frames(video, "input")
        if placement == "keep":
            canvas, _, out_fps = self._fit(video, fps, "input")
            truth = canvas
        else:
            if mode == "dynamic":
                raise UserError("outpaint mode 'dynamic' moves its region over time; use placement='keep'")
            y0, x0, y1, x1 = outpaint_region(mode, height, width)
            region, _, out_fps = self._fit(video, fps, "input (known region)", size=(y1 - y0, x1 - x0))
            canvas = np.zeros((len(region), height, width, 3), dtype=np.uint8)
            canvas[:, y0:y1, x0:x1] = region
            truth = None
        class_ids = self.engine.class_ids(class_id, 1)
        out, known = self._windows(
            canvas, lambda x, g: self.engine.outpaint(x, mode, class_ids, options, g), options
        )
        if paste_condition:
            out = np.where(known[..., None], canvas, out)
        result = GenerationResult(out, masked_condition(canvas, known), truth, out_fps)
        return self._finish(result, output)

    @torch.no_grad()
    def generate(
        self,
        class_id: int | None = None,
        num_frames: int = 1,
        *,
        output: str = "frames",
        **sampling: Any,
    ) -> np.ndarray | GenerationResult:
        """Generate ``num_frames`` frames (1 = an image) of class ``class_id`` (None = unconditional).
        Longer than a window: continued by frame prediction on its last half window (with the options of
        generation)."""
        options = self._options(sampling, output, conditioned=False)
        class_ids = self.engine.class_ids(class_id, 1)
        clip = self.engine.generate(1, num_frames, class_ids, options)
        result = GenerationResult(to_uint8_frames(clip[0]), None, None, self.fps or DEFAULT_FPS)
        return self._finish(result, output)


__all__ = ["GenerationResult", "SamplingOptions", "VideoGenPipeline"]
