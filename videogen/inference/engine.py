"""``InferenceEngine``: the COMMIT uses on float clips at the model's size, batched.

Clips here are float ``(B, 3, T, H, W)`` in ``[-1, 1]`` already at the model's frame size (the
pipeline fits user frames first). One *window* is ``geometry.num_frames`` frames: a task builder
makes the condition video and latent mask, the frozen tokenizer turns the condition video into
condition tokens, the sampler decodes a token grid, and the tokenizer decodes it back to pixels.
Longer outputs slide: the last ``c`` output frames are the condition frames of the next window.
Every window is checked against the tasks the transformer was trained on (:class:`TrainedTasks`):
a use it never learned is refused before any decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from videogen.errors import UserError
from videogen.inference.geometry import Geometry
from videogen.inference.sampling import SamplingOptions
from videogen.inference.trained_tasks import TrainedTasks
from videogen.tokenizer import VideoTokenizer
from videogen.transformer import CommitTransformer, TaskCondition, build_condition, get_task, sample
from videogen.transformer.tasks import Box

OUTPAINT_MODES = ("central", "vertical", "horizontal", "dynamic")


def check_outpaint_mode(mode: str) -> str:
    if mode not in OUTPAINT_MODES:
        raise UserError(f"outpaint mode {mode!r} is unknown; use {', '.join(OUTPAINT_MODES)}")
    return mode


@dataclass(frozen=True)
class Window:
    """One decoded window: ``video (B, 3, T, H, W)`` in [-1, 1] and the task condition it was made from."""

    video: torch.Tensor
    condition: TaskCondition


class InferenceEngine:
    """A tokenizer and a transformer that fit together (``exports.check_pair``), on one device, in eval
    mode; ``trained``: the tasks the transformer was trained on (every window is checked against them)."""

    def __init__(
        self,
        tokenizer: VideoTokenizer,
        transformer: CommitTransformer,
        geometry: Geometry,
        trained: TrainedTasks,
    ) -> None:
        self.tokenizer = tokenizer.eval()
        self.transformer = transformer.eval()
        self.geometry = geometry
        self.trained = trained
        self.device = next(transformer.parameters()).device
        self.progress = False  # show a progress bar over the windows of long outputs

    # ------------------------------------------------------------------ sizes and ids

    @property
    def num_frames(self) -> int:
        return self.geometry.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.geometry.height, self.geometry.width

    @property
    def num_classes(self) -> int:
        return self.transformer.config.num_classes

    @property
    def default_cond_frames(self) -> int:
        """The condition frames frame prediction was trained with, else ``1 + temporal_factor`` (5 for
        MAGVIT-v2: exactly latent frames 0 and 1); at most the window - 1."""
        trained = self.trained.option(
            "frame_prediction", "num_cond_frames", 1 + self.tokenizer.temporal_factor
        )
        return max(1, min(int(trained), self.num_frames - 1))

    @property
    def continuation_frames(self) -> int:
        """Condition frames when a generated clip is continued: the first half of the latent frames."""
        factor = self.tokenizer.temporal_factor
        latents = 1 + (self.num_frames - 1) // factor
        return 1 + factor * ((latents - 1) // 2)

    def class_ids(self, class_id: int | None, batch: int) -> torch.Tensor:
        """``(batch,)`` class ids: ``class_id`` in ``[0, num_classes)``, or UNCOND for None."""
        if class_id is None:
            return torch.full(
                (batch,), self.transformer.uncond_class_id, dtype=torch.int64, device=self.device
            )
        if self.num_classes == 0:
            raise UserError(
                f"class {class_id} given, but this transformer was trained without classes; leave the class out"
            )
        if (
            isinstance(class_id, bool)
            or not isinstance(class_id, int)
            or not 0 <= class_id < self.num_classes
        ):
            raise UserError(
                f"class {class_id!r} is out of range: this transformer knows classes 0..{self.num_classes - 1}"
            )
        return torch.full((batch,), class_id, dtype=torch.int64, device=self.device)

    # ------------------------------------------------------------------ one window

    @torch.no_grad()
    def sample_window(
        self,
        task: str,
        video: torch.Tensor,
        class_ids: torch.Tensor,
        options: SamplingOptions,
        generator: torch.Generator,
        **task_options,
    ) -> Window:
        """Decode one window of task ``task`` (a name of ``transformer.TASKS``) from ``video`` (B, 3, T, H, W).

        A task (with or without a class, with guidance) the transformer was not trained on is a
        :class:`UserError` naming the tasks it has.
        """
        uncond = class_ids == self.transformer.uncond_class_id
        for with_class in {bool(v) for v in (~uncond).tolist()}:
            self.trained.require(task, with_class, guidance=options.guidance_scale > 0)
        video = video.to(self.device, torch.float32)
        latent_shape = self.tokenizer.latent_shape(*video.shape[2:])
        condition = build_condition(task, video, latent_shape, **task_options)
        spec = get_task(task)
        batch = video.shape[0]
        if spec.has_condition:
            cond_tokens = self.tokenizer.tokenize(condition.video)  # (B, T', H', W')
        else:
            cond_tokens = torch.zeros(batch, *latent_shape, dtype=torch.int64, device=self.device)
        task_ids = torch.full((batch,), spec.task_id, dtype=torch.int64, device=self.device)
        tokens = sample(
            self.transformer,
            cond_tokens,
            condition.latent_mask,
            task_ids,
            class_ids,
            generator=generator,
            **options.sampler_kwargs(),
        )
        return Window(self.tokenizer.detokenize(tokens), condition)

    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor) -> torch.Tensor:
        """The tokenizer's round trip ``detokenize(tokenize(video))`` (B, 3, T, H, W) in [-1, 1]."""
        return self.tokenizer.detokenize(self.tokenizer.tokenize(video.to(self.device, torch.float32)))

    # ------------------------------------------------------------------ uses

    def check_cond_frames(self, num_cond_frames: int) -> None:
        if not isinstance(num_cond_frames, int) or not 1 <= num_cond_frames < self.num_frames:
            raise UserError(
                f"{num_cond_frames!r} condition frames: use 1..{self.num_frames - 1} (the model's window is "
                f"{self.num_frames} frames and must leave at least one frame to predict)"
            )

    def keeps_class(self) -> bool:
        """Whether frame-prediction windows that continue a clip keep its class (only when frame
        prediction was trained with classes; otherwise they go without)."""
        return self.trained.serves("frame_prediction", with_class=True)

    def check_continuation(self, with_class: bool, guidance: bool = False) -> None:
        """A clip longer than a window is continued by frame prediction: refuse it now (a
        :class:`UserError`) when that was not trained, before the first window is decoded."""
        self.trained.require("frame_prediction", with_class and self.keeps_class(), guidance=guidance)

    def _window_from(self, context: torch.Tensor) -> torch.Tensor:
        """``(B, 3, c, H, W)`` -> ``(B, 3, num_frames, H, W)``: the last frame repeated (the FP padding)."""
        pad = self.num_frames - context.shape[2]
        return torch.cat([context, context[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)

    @torch.no_grad()
    def extend(
        self,
        clip: torch.Tensor,
        num_frames: int,
        num_cond_frames: int,
        class_ids: torch.Tensor,
        options: SamplingOptions,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Slide frame prediction: append windows conditioned on the last ``num_cond_frames`` frames of
        ``clip`` (B, 3, T, H, W) until it has ``num_frames`` frames; each window adds ``window - c``.
        A class is kept when frame prediction was trained with classes, else the windows go without."""
        self.check_cond_frames(num_cond_frames)
        step = self.num_frames - num_cond_frames
        windows = max(0, -(-(num_frames - clip.shape[2]) // step))
        if windows and not self.keeps_class():
            class_ids = torch.full_like(class_ids, self.transformer.uncond_class_id)
        for _ in tqdm(
            range(windows), desc="windows", unit="window", disable=not self.progress or windows < 2
        ):
            window = self.sample_window(
                "frame_prediction",
                self._window_from(clip[:, :, -num_cond_frames:]),
                class_ids,
                options,
                generator,
                num_cond_frames=num_cond_frames,
            )
            clip = torch.cat([clip, window.video[:, :, num_cond_frames:]], dim=2)
        return clip[:, :, :num_frames]

    @torch.no_grad()
    def predict(
        self,
        cond_video: torch.Tensor,
        num_frames: int,
        class_ids: torch.Tensor,
        options: SamplingOptions,
        paste_condition: bool = True,
    ) -> torch.Tensor:
        """Frame prediction: ``cond_video (B, 3, c, H, W)`` (the condition frames) -> ``(B, 3, num_frames, H, W)``.

        The first window predicts ``window - c`` frames; later windows slide (see :meth:`extend`). With
        ``paste_condition`` the first ``c`` output frames are the given frames (and so condition the
        next windows), otherwise the model's reconstruction of them.
        """
        c = cond_video.shape[2]
        self.check_cond_frames(c)
        if num_frames <= c:
            raise UserError(f"num_frames = {num_frames} must exceed the {c} condition frames")
        cond_video = cond_video.to(self.device, torch.float32)
        generator = options.generator()
        first = self.sample_window(
            "frame_prediction",
            self._window_from(cond_video),
            class_ids,
            options,
            generator,
            num_cond_frames=c,
        )
        clip = first.video
        if paste_condition:
            clip = torch.cat([cond_video, clip[:, :, c:]], dim=2)
        return self.extend(clip, num_frames, c, class_ids, options, generator)

    @torch.no_grad()
    def interpolate(
        self,
        first: torch.Tensor,
        last: torch.Tensor,
        class_ids: torch.Tensor,
        options: SamplingOptions,
        generator: torch.Generator | None = None,
    ) -> Window:
        """Frame interpolation over one window: ``first``, ``last`` (B, 3, 1, H, W) -> window (B, 3, T, H, W)."""
        video = torch.cat([first, first.expand(-1, -1, self.num_frames - 2, -1, -1), last], dim=2)
        generator = generator or options.generator()
        return self.sample_window("interpolation", video, class_ids, options, generator)

    @torch.no_grad()
    def inpaint(
        self,
        video: torch.Tensor,
        box: Box,
        class_ids: torch.Tensor,
        options: SamplingOptions,
        generator: torch.Generator | None = None,
    ) -> Window:
        """Fill ``box`` (y0, x0, y1, x1 in model pixels) of a window ``video`` (B, 3, T, H, W)."""
        generator = generator or options.generator()
        return self.sample_window("inpaint", video, class_ids, options, generator, mode="box", box=box)

    @torch.no_grad()
    def outpaint(
        self,
        video: torch.Tensor,
        mode: str,
        class_ids: torch.Tensor,
        options: SamplingOptions,
        generator: torch.Generator | None = None,
    ) -> Window:
        """Keep the ``mode`` region of a window ``video`` (B, 3, T, H, W) and generate the rest."""
        check_outpaint_mode(mode)
        generator = generator or options.generator()
        return self.sample_window(f"outpaint_{mode}", video, class_ids, options, generator)

    @torch.no_grad()
    def generate(
        self, batch: int, num_frames: int, class_ids: torch.Tensor, options: SamplingOptions
    ) -> torch.Tensor:
        """Generation from nothing (or a class): ``(B, 3, num_frames, H, W)``; 1 frame = an image.

        More frames than one window: the generated window is continued by frame prediction on its
        last :attr:`continuation_frames` frames.
        """
        if not isinstance(num_frames, int) or num_frames < 1:
            raise UserError(f"num_frames = {num_frames!r} must be >= 1 (1 = an image)")
        height, width = self.frame_size
        generator = options.generator()
        if num_frames > self.num_frames:
            with_class = bool((class_ids != self.transformer.uncond_class_id).any())
            self.check_continuation(with_class, options.guidance_scale > 0)
        if num_frames == 1:
            blank = torch.zeros(batch, 3, 1, height, width, device=self.device)
            return self.sample_window("image_generation", blank, class_ids, options, generator).video
        task = (
            "unconditional" if int(class_ids[0]) == self.transformer.uncond_class_id else "class_generation"
        )
        blank = torch.zeros(batch, 3, self.num_frames, height, width, device=self.device)
        clip = self.sample_window(task, blank, class_ids, options, generator).video
        return self.extend(clip, num_frames, self.continuation_frames, class_ids, options, generator)
