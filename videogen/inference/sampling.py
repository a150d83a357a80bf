"""``SamplingOptions``: the knobs of COMMIT decoding for one call of the pipeline, checked up front."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from videogen.errors import UserError
from videogen.transformer.mask_schedules import SCHEDULES
from videogen.transformer.sampler import GUIDANCE_RAMPS, KEEP_CONDITION


@dataclass(frozen=True)
class SamplingOptions:
    """How tokens are decoded (see ``videogen.transformer.sampler.sample``).

    seed: seeds a CPU ``torch.Generator`` (same result on CPU and GPU). steps: decoding steps per
    window (MAGVIT: 12). schedule: "cosine" | "linear" | "exp". temperature: sampling temperature of
    the token distribution (0 = argmax). top_k: keep the k most likely codes per head (None = all).
    choice_temperature: Gumbel noise on the confidence that picks which tokens to keep, annealed to 0
    (MaskGIT/MAGVIT: 4.5). guidance_scale: classifier-free guidance ``cond + s * (cond - uncond)``
    (0 = off; needs a model trained with condition dropout). guidance_ramp: "constant" | "linear".
    keep_condition: "regenerate" (MAGVIT: condition tokens are re-predicted) | "fixed".
    """

    seed: int = 0
    steps: int = 12
    schedule: str = "cosine"
    temperature: float = 1.0
    top_k: int | None = None
    choice_temperature: float = 4.5
    guidance_scale: float = 0.0
    guidance_ramp: str = "constant"
    keep_condition: str = "regenerate"

    def __post_init__(self) -> None:
        _require(isinstance(self.seed, int), "seed", self.seed, "an integer")
        _require(isinstance(self.steps, int) and self.steps >= 1, "steps", self.steps, "an integer >= 1")
        _require(self.schedule in SCHEDULES, "schedule", self.schedule, " | ".join(SCHEDULES))
        _require(self.temperature >= 0, "temperature", self.temperature, ">= 0 (0 = argmax)")
        _require(
            self.top_k is None or (isinstance(self.top_k, int) and self.top_k >= 1),
            "top_k",
            self.top_k,
            "an integer >= 1 or None",
        )
        _require(self.choice_temperature >= 0, "choice_temperature", self.choice_temperature, ">= 0")
        _require(self.guidance_scale >= 0, "guidance_scale", self.guidance_scale, ">= 0 (0 = off)")
        _require(
            self.guidance_ramp in GUIDANCE_RAMPS,
            "guidance_ramp",
            self.guidance_ramp,
            " | ".join(GUIDANCE_RAMPS),
        )
        _require(
            self.keep_condition in KEEP_CONDITION,
            "keep_condition",
            self.keep_condition,
            " | ".join(KEEP_CONDITION),
        )

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> SamplingOptions:
        """Build from keyword arguments; an unknown name is a :class:`UserError` listing the known ones."""
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(
                f"unknown sampling option(s) {', '.join(unknown)}; use {', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**options)

    def generator(self) -> torch.Generator:
        """A CPU generator seeded with ``seed`` (the sampler draws on it and moves noise to the device)."""
        return torch.Generator(device="cpu").manual_seed(self.seed)

    def sampler_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``sampler.sample`` (everything but the seed)."""
        kwargs = asdict(self)
        kwargs.pop("seed")
        return kwargs


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UserError(f"sampling option {name} = {value!r} is invalid; use {allowed}")
