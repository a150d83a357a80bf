"""``./run.sh train transformer``: the COMMIT transformer trained on a token cache with DeepSpeed.

::

    with distributed_session() as dist:
        caches made on rank 0 (tokenizer export -> token cache of data.train, and of data.val)
        with Trainer(cfg.train, cfg.run, dist, config=cfg) as trainer:
            engine = trainer.add_engine("model", CommitTransformer(cfg.model), ema=True)
            trainer.fit(token loader, TrainStep, evaluate=fixed-mask eval, media=sample videos)
            trainer.export("model", <run>/export)      # EMA weights + what they were trained for

The train cache (default ``<run>/token_cache``) is made on first use and remade when the tokenizer,
the data or the task list changes; an explicitly given ``cache`` that is complete is used as it is
(its clip settings must match ``data``). ``model.codebook_size``, ``max_frames/height/width`` and
``num_classes`` are taken from the cache. Outputs in ``<run>/``: ``config.yaml``, ``checkpoints/``,
``tensorboard/``, ``metrics.jsonl``, ``log.txt``, ``samples/`` and ``export/``: a self-contained folder
(``CommitTransformer.from_pretrained``) that records the trained tasks and their weights, the tokenizer
(config and weights hash), the window (frames, size, fps), the class names and the sampling defaults
(:func:`export_info`); inference reads nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from videogen.data.loader import EpochDataLoader
from videogen.data.samplers import ResumableSampler
from videogen.errors import UserError
from videogen.export import TokenizerIdentity, TransformerExportInfo, WindowGeometry
from videogen.token_cache.reader import TokenDataset
from videogen.training.distributed import DistInfo, distributed_session
from videogen.training.trainer import Trainer
from videogen.transformer.model import CommitTransformer
from videogen.transformer_training.data import (
    cache_paths,
    check_image_cache,
    fill_model_config,
    image_cache_path,
    prepare_caches,
    require_tokenizer,
    training_fps,
)
from videogen.transformer_training.samples import SampleVideos
from videogen.transformer_training.step import (
    SHOWN,
    TrainStep,
    evaluate_fixed,
    mean_of,
    transformer_param_groups,
)
from videogen.transformer_training.training_config import (
    IMAGE_TASK,
    TransformerTrainingConfig,
    load_training_config,
)

# ----------------------------------------------------------------------------- the run


def token_loader(
    cfg: TransformerTrainingConfig, dataset: TokenDataset, dist: DistInfo
) -> tuple[EpochDataLoader, ResumableSampler]:
    """Shuffled full batches of cache items for this rank; the sampler's state is the data position."""
    batch_size = cfg.train.engine.micro_batch_size
    sampler = ResumableSampler(
        len(dataset), batch_size, cfg.train.seed, dist.rank, dist.world_size, shuffle=True, drop_last=True
    )
    if len(sampler) == 0:
        raise UserError(
            f"token cache '{dataset.cache_dir}' has {len(dataset)} items, fewer than one global batch of "
            f"{batch_size * dist.world_size}; add data or lower train.engine.micro_batch_size"
        )
    workers = cfg.loader_workers
    loader = EpochDataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        multiprocessing_context="fork" if workers > 0 else None,
    )
    return loader, sampler


class Monitor:
    """The loop's callbacks: fixed-mask evaluation (every rank) and sample videos (rank 0), EMA weights."""

    def __init__(
        self, cfg: TransformerTrainingConfig, trainer: Trainer, held_out: TokenDataset, tokenizer: Path
    ):
        self.cfg, self.trainer, self.held_out = cfg, trainer, held_out
        self.evals: dict[int, dict[str, float]] = {}
        self.media_steps: set[int] = set()
        self.samples = SampleVideos(
            held_out,
            tokenizer,
            cfg.sampling,
            trainer.run_dir / "samples",
            num_classes=cfg.model.num_classes,
            device=trainer.device,
            fps=cfg.data.target_fps or cfg.sampling.fps,
        )

    @property
    def evaluating(self) -> bool:
        return self.cfg.evaluation.num_items > 0

    def evaluate(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        with self.trainer.ema_weights("model") as model:
            result = evaluate_fixed(
                model,
                self.held_out,
                list(cfg.masking.weights()),
                cfg.evaluation,
                num_classes=cfg.model.num_classes,
                schedule=cfg.masking.schedule,
                label_smoothing=cfg.model.label_smoothing,
                device=self.trainer.device,
            )
        self.evals[step] = result
        return result

    def media(self, step: int) -> dict[str, Any]:
        self.media_steps.add(step)
        if not self.trainer.dist.is_main:
            return {}
        with self.trainer.ema_weights("model") as model:
            return self.samples(model, step)

    def log_evaluation(self, step: int) -> None:
        """Evaluate now (unless done at this step) and log it under ``eval/``."""
        if self.evaluating and step not in self.evals:
            self.trainer.logger.scalars(step, {f"eval/{k}": v for k, v in self.evaluate(step).items()})

    def log_media(self, step: int) -> None:
        """Sample videos now (unless done at this step), to files and TensorBoard."""
        if step not in self.media_steps:
            for tag, video in self.media(step).items():
                self.trainer.logger.video(step, tag, video)


def resume(trainer: Trainer) -> int:
    """``trainer.resume()``; a checkpoint of another model (e.g. other clip size or preset) is a UserError."""
    try:
        return trainer.resume()
    except RuntimeError as e:
        if "Error(s) in loading state_dict" not in str(e):
            raise
        found = trainer.checkpoints.resolve(trainer.cfg.checkpoint.resume)
        detail = str(e).splitlines()[-1].strip()
        raise UserError(
            f"checkpoint '{found}' holds another model than this config builds ({detail}); "
            "use a new run.name, or train.checkpoint.resume=never to start over in this run folder"
        ) from None


def summary_text(trainer: Trainer, step_fn: TrainStep, monitor: Monitor, timing: dict[str, float]) -> str:
    """Where the export and samples are, and the masked-position loss / accuracy from start to end."""
    steps = int(timing["steps"])
    per_step = f", {timing['train_s'] / steps:.2f} s/step" if steps else ""
    lines = [
        f"transformer training done: step {trainer.step} ({steps} steps this run in {timing['train_s']:.0f} s"
        f"{per_step}; wall time {timing['wall_s']:.0f} s)",
        f"  export   {trainer.run_dir / 'export'}  (CommitTransformer.from_pretrained, EMA weights; "
        "tasks, tokenizer, window and sampling defaults in its config.yaml)",
    ]
    if monitor.samples.written:
        lines.append(
            f"  samples  {trainer.run_dir / 'samples'}  (latest: {monitor.samples.written[-1].name})"
        )
    lines.append(
        f"  metrics  {trainer.run_dir / 'metrics.jsonl'}, TensorBoard: tensorboard --logdir {trainer.run_dir}"
    )
    first, last = step_fn.first, list(step_fn.history)
    for name in ("mask_loss", "mask_acc"):
        start, end = mean_of(first, name), mean_of(last, name)
        if start is not None and end is not None:
            lines.append(
                f"  train {name}: {start:.4f} -> {end:.4f}  "
                f"(mean of the first {len(first)} / last {len(last)} steps)"
            )
    if monitor.evals:
        (s0, e0), (s1, e1) = min(monitor.evals.items()), max(monitor.evals.items())
        for name in ("mask_loss", "mask_acc"):
            if name in e0 and name in e1:
                lines.append(
                    f"  held-out {name}: {e0[name]:.4f} -> {e1[name]:.4f}  (steps {s0} -> {s1}, EMA weights, "
                    "fixed masks)"
                )
    return "\n".join(lines)


def export_info(
    cfg: TransformerTrainingConfig,
    train_set: TokenDataset,
    tokenizer: TokenizerIdentity,
    fps: float | None,
) -> TransformerExportInfo:
    """What the export records beside the weights: the trained tasks (weights, the options the cache
    built their conditions with), the CFG dropout, the tokenizer, the window (``fps``: the training
    clips' rate, :func:`training_fps`), classes, sampling defaults."""
    weights = cfg.masking.weights()
    cached = train_set.index["tasks"]
    s = cfg.sampling
    return TransformerExportInfo(
        tasks=weights,
        task_options={
            name: dict(cached[name]["options"]) for name in weights if cached.get(name, {}).get("options")
        },
        class_dropout=cfg.masking.class_dropout,
        condition_dropout=cfg.masking.condition_dropout,
        tokenizer=tokenizer,
        window=WindowGeometry(cfg.data.num_frames, cfg.data.resolution, cfg.data.resolution, fps),
        classes=list(train_set.classes) if train_set.classes else None,
        sampling={**s.decoding(conditioned=False), "conditioned": dict(s.conditioned)},
    )


def tokenizer_identity(folder: Path) -> TokenizerIdentity:
    """The tokenizer export's identity (config, codebook size, weights hash), read now: what the export
    will record even if the tokenizer folder changes while the transformer trains."""
    from videogen.tokenizer import VideoTokenizer

    return TokenizerIdentity.of(VideoTokenizer.from_pretrained(folder), trained_from=folder)


def train(cfg: TransformerTrainingConfig, dist: DistInfo, started: float) -> int:
    """The whole run on this rank (every rank calls it); see the module docstring. Returns 0."""
    run_dir = Path(cfg.run.root) / cfg.run.name
    tokenizer = require_tokenizer(cfg.tokenizer)
    train_cache, val_cache = cache_paths(cfg, run_dir)
    image_cache = image_cache_path(cfg, run_dir)
    prepare_caches(cfg, tokenizer, train_cache, val_cache, image_cache)
    # what the export will record, read now (rank 0 just made the caches from these same files)
    identity = tokenizer_identity(tokenizer) if dist.is_main else None
    fps = training_fps(cfg) if dist.is_main else None
    tasks = cfg.masking.cached_tasks()
    train_set = TokenDataset(train_cache, tasks=tasks, tokenizer=tokenizer)
    val_set = TokenDataset(val_cache, tasks=tasks, tokenizer=tokenizer) if val_cache is not None else None
    fill_model_config(cfg, train_set, val_set)
    held_out = val_set if val_set is not None and len(val_set) > 0 else train_set
    image_set = None
    if image_cache is not None:
        image_set = TokenDataset(image_cache, tasks=[IMAGE_TASK], tokenizer=tokenizer)
        check_image_cache(train_set, image_set)

    with Trainer(cfg.train, cfg.run, dist, config=cfg) as trainer:
        model = CommitTransformer(cfg.model)
        groups = transformer_param_groups(model, cfg.train.optimizer.weight_decay)
        engine = trainer.add_engine("model", model, ema=True, param_groups=groups)
        loader, sampler = token_loader(cfg, train_set, dist)
        trainer.register("data", sampler)
        first_step = resume(trainer)
        trainer.logger.info(
            f"COMMIT transformer: {model.num_parameters() / 1e6:.2f}M parameters, "
            f"grid {train_set.grid_shape}, "
            f"{train_set.codebook_size} codes, {len(train_set)} training items"
            + (f" and {len(image_set)} images" if image_set is not None else "")
            + f", tasks {', '.join(cfg.masking.weights())}"
        )
        step_fn = TrainStep(
            trainer,
            engine,
            cfg.masking,
            cfg.model.num_classes,
            cfg.model.label_smoothing,
            keep=max(1, min(20, cfg.train.max_steps // 4)),
            images=image_set,
            image_batch_size=cfg.data.image_batch_size or cfg.train.engine.micro_batch_size,
        )
        monitor = Monitor(cfg, trainer, held_out, tokenizer)
        if trainer.step == 0:
            monitor.log_evaluation(0)
        fit_started = time.time()
        trainer.fit(
            loader,
            step_fn,
            evaluate=monitor.evaluate if monitor.evaluating else None,
            media=monitor.media,
            show=SHOWN,
        )
        timing = {"steps": trainer.step - first_step, "train_s": time.time() - fit_started}
        if trainer.step < cfg.train.max_steps:  # stopped by SIGINT / SIGTERM: the checkpoint is written
            return 0
        monitor.log_evaluation(trainer.step)
        monitor.log_media(trainer.step)
        info = export_info(cfg, train_set, identity, fps) if dist.is_main else None

        def build() -> CommitTransformer:
            model = CommitTransformer(cfg.model)
            model.export_info = info
            return model

        trainer.export("model", run_dir / "export", build=build)
        if dist.is_main:
            timing["wall_s"] = time.time() - started
            print(summary_text(trainer, step_fn, monitor, timing), flush=True)
    return 0


def main(config_path: str | None, overrides: list[str]) -> int:
    """Entry point of ``./run.sh train transformer [--config YAML] [key=value ...]``."""
    started = time.time()
    cfg = load_training_config(config_path, overrides)
    require_tokenizer(cfg.tokenizer)  # before the (slow) DeepSpeed start
    with distributed_session() as dist:
        return train(cfg, dist, started)


__all__ = ["TransformerTrainingConfig", "load_training_config", "main", "train"]
