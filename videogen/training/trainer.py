"""The generic training loop around a plain ``train_step(batch) -> metrics`` function.

A :class:`Trainer` owns what every videogen trainer needs: the run directory, DeepSpeed engines
(one, or a generator and a discriminator), fp32 EMAs, checkpointed state objects, atomic
checkpoints with resume, the non-finite guard, SIGINT/SIGTERM handling and logging. The step
function does the model-specific work (forward, losses, ``engine.backward`` / ``engine.step``) and
stays a plain function of one micro-batch, as in MAE's ``engine_pretrain.py``::

    with distributed_session() as dist:
        with Trainer(cfg.train, cfg.run, dist, config=cfg) as trainer:
            engine = trainer.add_engine("model", model, ema=True)
            loader, sampler = build_loader(cfg.data, "train", cfg.train.engine.micro_batch_size,
                                           dist.rank, dist.world_size, cfg.train.seed)
            trainer.register("data", sampler)      # position in the data, restored on resume
            trainer.resume()

            def train_step(batch):
                loss = engine(trainer.to_device(batch)).float().mean()
                if trainer.finite(loss=loss):        # collective; False -> skip the update
                    engine.backward(loss)
                    engine.step()
                return {"loss": loss}

            return trainer.fit(loader, train_step)
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from videogen.collectives import any_rank, barrier, broadcast_
from videogen.config_loader import save_config
from videogen.errors import UserError
from videogen.export import export_model, export_pretrained
from videogen.training.checkpoint import CheckpointManager
from videogen.training.config import OptimizerConfig, RunConfig, ScheduleConfig, TrainConfig
from videogen.training.deepspeed_config import compute_dtype, resolve_precision
from videogen.training.deepspeed_engine import create_engine, to_device
from videogen.training.distributed import DistInfo
from videogen.training.ema import EMA
from videogen.training.guard import NonFiniteGuard
from videogen.training.logger import MetricAverager, MetricsLogger
from videogen.training.resume import apply_peak_lr, flatten, resume_point
from videogen.training.rng_state import seed_everything
from videogen.training.signals import StopSignal


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


StepFn = Callable[[Any], dict[str, "torch.Tensor | float"]]


def _passes(data: Iterable[Any]) -> Iterator[Any]:
    """Batches of ``data``, pass after pass (epochs), forever; an empty pass is an error."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise UserError(
                "the training data gave no batches (fewer samples than one global batch?); "
                "add data or lower train.engine.micro_batch_size"
            )


class Trainer:
    """Run directory, engines, EMAs, checkpoints, guard, signals and logging of one training run.

    Attributes used by step functions: ``engines`` (name -> DeepSpeedEngine), ``emas``, ``dist``,
    ``device``, ``dtype`` (the engines' compute dtype), ``step`` (optimizer steps of the first engine
    added), ``logger`` and ``run_dir``.

    ``config`` (the command's whole config, whose ``train`` is ``cfg``) is written to
    ``config.yaml`` and into each checkpoint; the checkpoint to resume from is checked against it
    here, before anything is written (:mod:`videogen.training.resume`: what a resume may change).
    ``checkpoint.resume="never"`` in a folder that already holds checkpoints is refused.
    """

    def __init__(self, cfg: TrainConfig, run: RunConfig, dist: DistInfo, *, config: Any = None):
        self.cfg = cfg
        self.dist = dist
        self.device = dist.device
        self.run_dir = Path(run.root) / run.name
        self.precision = resolve_precision(cfg.engine.precision, dist.device)
        self.dtype = compute_dtype(self.precision)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", cfg.checkpoint.keep_last, dist)
        whole = config if config is not None and getattr(config, "train", None) is cfg else None
        self.flat_config = flatten(whole) if whole is not None else flatten(cfg, "train.")
        self.resume_from, self._resume_changes = resume_point(
            self.checkpoints, cfg.checkpoint.resume, self.flat_config, dist.world_size
        )
        self._prepare_run_dir(config)
        self.logger = MetricsLogger(self.run_dir, dist.is_main, cfg.log.tensorboard, cfg.log.progress_bar)
        self.guard = NonFiniteGuard(cfg.max_nonfinite_steps, dist.device)
        self.engines: dict[str, Any] = {}
        self.emas: dict[str, EMA] = {}
        self.states: dict[str, Stateful] = {}
        self.step = 0
        self._ema_steps: dict[str, int] = {}
        self._skipped: dict[str, int] = {}
        self._resumed = False
        self._saved_step = -1
        self._peak_lr: dict[str, float] = {}
        seed_everything(cfg.seed)  # the same on every rank: identical model initialisation

    def _prepare_run_dir(self, config: Any) -> None:
        """Create the run folder, write ``config.yaml`` and check that checkpoints can be written, now
        rather than at the first save; a failure is one line on every rank."""
        problem = None
        try:
            self.checkpoints.root.mkdir(parents=True, exist_ok=True)
            if self.dist.is_main:
                if config is not None:
                    save_config(config, self.run_dir / "config.yaml")
                handle, probe = tempfile.mkstemp(dir=self.checkpoints.root, prefix=".write-check-")
                os.close(handle)
                os.unlink(probe)
        except OSError as e:
            problem = (
                f"run folder '{self.run_dir}' cannot be written ({e.strerror}: '{e.filename}'); "
                "set run.root to a writable folder, or fix its permissions"
            )
        if any_rank(problem is not None, self.device):
            raise UserError(
                problem or f"rank 0 cannot write the run folder '{self.run_dir}' (its message says why)"
            )

    # ------------------------------------------------------------------ setup

    def add_engine(
        self,
        name: str,
        module: nn.Module,
        *,
        ema: bool = False,
        param_groups: list[dict[str, Any]] | None = None,
        optimizer: OptimizerConfig | None = None,
        schedule: ScheduleConfig | None = None,
    ) -> Any:
        """Wrap ``module`` in a DeepSpeed engine saved under ``name``; the first one added sets ``step``.

        ``ema=True`` keeps an fp32 EMA (decay ``cfg.ema_decay``) taken from the fp32 weights before
        DeepSpeed casts them, updated after each of this engine's optimizer steps.
        """
        if name in self.engines:
            raise ValueError(f"engine {name!r} added twice")
        self._peak_lr[name] = (optimizer or self.cfg.optimizer).lr
        if ema and self.cfg.ema_decay > 0:
            self.emas[name] = EMA(module, self.cfg.ema_decay, device=self.device)
            broadcast_(list(self.emas[name].state_dict().values()))  # DeepSpeed broadcasts the weights too
        engine = create_engine(
            module, self.cfg, self.dist, param_groups=param_groups, optimizer=optimizer, schedule=schedule
        )
        self.engines[name] = engine
        return engine

    def register(self, name: str, obj: Any) -> Any:
        """Save ``obj.state_dict()`` in checkpoints and restore it on resume (LeCam EMAs, data position).

        The state must be the same on every rank (rank 0 writes it): tensors, numbers, strings, lists
        and dicts. Returns ``obj``.
        """
        self.states[name] = obj
        return obj

    def resume(self) -> int:
        """Load the checkpoint named by ``cfg.checkpoint.resume`` (``auto``: newest, if any); returns the step.

        Call after every engine and state object is added; :meth:`fit` calls it when you did not.
        """
        self._resumed = True
        path = self.resume_from
        if self.dist.is_main:
            self.checkpoints.repair()  # a save killed just before it updated `latest`
        rank_seed = self.cfg.seed * 65537 + self.dist.rank + 1
        if path is None:
            seed_everything(rank_seed)  # per-rank randomness (masks, dropout, augmentation) from here on
        else:
            client = self.checkpoints.load(path, self.engines, self.emas)
            for name, obj in self.states.items():
                if name in client["states"]:
                    obj.load_state_dict(client["states"][name])
                else:
                    self.logger.info(f"checkpoint {path} has no state {name!r}; it starts fresh")
            self.guard.load_state_dict(client["guard"])
            self.step = int(client["step"])
            self._saved_step = self.step
            if not client["restored_rng"]:
                seed_everything(rank_seed + self.step)
            self.logger.info(f"resumed from {path} at step {self.step}")
            dropped = self.logger.forget_after(self.step)
            if dropped:
                self.logger.info(
                    f"metrics.jsonl: dropped {dropped} record(s) of steps after {self.step} (trained again now)"
                )
            if self._resume_changes:
                self.logger.info(f"changed since that checkpoint: {'; '.join(self._resume_changes)}")
            for name, engine in self.engines.items():
                lr = self._peak_lr[name]
                restored = apply_peak_lr(engine, lr)
                if restored is not None:
                    self.logger.info(
                        f"{name}: peak lr {lr:g} from the config replaces the checkpoint's {restored:g} "
                        f"from step {self.step} on (the schedule goes on from its step)"
                    )
            self.logger.event(self.step, event="resumed", checkpoint=str(path), changed=self._resume_changes)
        self._ema_steps = {name: engine.global_steps for name, engine in self.engines.items()}
        self._skipped = {name: engine.skipped_steps for name, engine in self.engines.items()}
        return self.step

    # ------------------------------------------------------------------ helpers for step functions

    def to_device(self, batch: Any, dtype: torch.dtype | None = None) -> Any:
        """Move a (nested) batch to this rank's device; floating tensors to ``dtype`` (default: ``self.dtype``)."""
        return to_device(batch, self.device, dtype or self.dtype)

    def finite(self, **losses: torch.Tensor) -> bool:
        """Whether every named loss is finite on every rank (a collective); False = skip this update."""
        return self.guard.check(**losses)

    @contextmanager
    def ema_weights(self, name: str) -> Iterator[nn.Module]:
        """``engine.module`` of ``name`` running with its EMA weights (for evaluation); restored on exit."""
        module = self.engines[name].module
        if name not in self.emas:
            yield module
            return
        with self.emas[name].swapped_into(module):
            yield module

    def export(
        self,
        name: str,
        out_dir: str | Path,
        *,
        build: Callable[[], nn.Module] | None = None,
        config: Any = None,
        kind: str | None = None,
    ) -> Path:
        """Export ``name``'s EMA weights (else its current weights, fp32): ``config.yaml`` + ``model.safetensors``.

        With ``build`` (a fresh model) its ``save_pretrained`` writes the files; otherwise
        :func:`export_model` writes ``config`` under ``kind``. Rank 0 writes; every rank must call.
        """
        if name in self.emas:
            weights = self.emas[name].state_dict()
        else:
            weights = {k: v.detach().float() for k, v in self.engines[name].module.state_dict().items()}
        out_dir = Path(out_dir)
        if self.dist.is_main:
            if build is not None:
                export_pretrained(build, weights, out_dir)
            else:
                export_model(weights, config, kind or name, out_dir)
        barrier()
        return out_dir

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (every rank calls this)."""
        client = {
            "step": self.step,
            "states": {name: obj.state_dict() for name, obj in self.states.items()},
            "guard": self.guard.state_dict(),
        }
        path = self.checkpoints.save(self.step, self.engines, self.emas, client, config=self.flat_config)
        self._saved_step = self.step
        self.logger.event(self.step, event="checkpoint", path=str(path))
        return path

    # ------------------------------------------------------------------ the loop

    def _update_emas(self) -> None:
        for name, ema in self.emas.items():
            engine = self.engines[name]
            if engine.global_steps > self._ema_steps[name]:
                ema.update(engine.module)
                self._ema_steps[name] = engine.global_steps

    def _log_extras(self) -> dict[str, float]:
        extras: dict[str, float] = {"nonfinite_steps": float(self.guard.total)}
        for name, engine in self.engines.items():
            extras[f"lr/{name}"] = float(engine.get_lr()[0])
            norm = engine.get_global_grad_norm()
            if norm is not None:
                extras[f"grad_norm/{name}"] = float(norm)
        return extras

    def _newest_hint(self) -> str:
        return f"; the newest checkpoint is {self.checkpoints.latest()}"

    def _due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def fit(
        self,
        data: Iterable[Any],
        train_step: StepFn,
        *,
        evaluate: Callable[[int], dict[str, float] | None] | None = None,
        media: Callable[[int], dict[str, torch.Tensor]] | None = None,
        show: tuple[str, ...] | None = None,
    ) -> int:
        """Run ``train_step`` on micro-batches of ``data`` until ``cfg.max_steps`` optimizer steps.

        ``data`` is iterated again whenever a pass ends (an epoch loader that resumes mid-epoch once
        its sampler's state is restored); a pass without batches is an error. After each optimizer
        step of the first engine: EMA update; logging every ``log.every_steps`` (``show`` names go
        on the progress bar, default the first four metrics); ``evaluate(step)`` every
        ``log.eval_every_steps`` (logged under ``eval/``); ``media(step)`` every
        ``log.media_every_steps`` (``{tag: (B, C, T, H, W) video in [-1, 1]}``); a checkpoint every
        ``checkpoint.every_steps`` and at the end. Callbacks run on every rank.

        SIGINT/SIGTERM: checkpoint, then return 0. A non-finite loss (or an update DeepSpeed skipped
        for non-finite gradients) is skipped and counted; ``max_nonfinite_steps`` in a row raise
        :class:`~videogen.training.guard.TrainingDivergedError` and write no checkpoint. Returns 0.
        """
        if not self.engines:
            raise ValueError("add an engine before calling fit()")
        if not self._resumed:
            self.resume()
        primary = next(iter(self.engines.values()))
        cfg = self.cfg
        if self.step >= cfg.max_steps:
            self.logger.info(f"nothing to train: step {self.step} >= train.max_steps={cfg.max_steps}")
            return 0
        averager = MetricAverager()
        shown = show
        deadline = None if cfg.max_minutes is None else time.monotonic() + 60.0 * cfg.max_minutes
        data_iter = _passes(data)
        self.logger.start_progress(cfg.max_steps, self.step)
        try:
            with StopSignal(verbose=self.dist.is_main) as stop:
                while self.step < cfg.max_steps:
                    try:
                        batch = next(data_iter)
                    except Exception:
                        if stop.received is None:
                            raise
                        break  # a signal also hit the data workers: save what we have
                    metrics = train_step(batch)
                    for name, engine in self.engines.items():
                        if engine.skipped_steps > self._skipped[name]:  # DeepSpeed found non-finite gradients
                            self.guard.note(f"{name} gradients")
                            self._skipped[name] = engine.skipped_steps
                    if not self.guard.end_step(self.step, hint=self._newest_hint):
                        averager.add(metrics)
                    if primary.global_steps == self.step:
                        continue  # inside a gradient-accumulation window
                    advanced, self.step = primary.global_steps - self.step, primary.global_steps
                    self._update_emas()
                    self.logger.advance(advanced)
                    if self._due(cfg.log.every_steps) or self.step == cfg.max_steps:
                        logged = {**averager.reduce(self.device), **self._log_extras()}
                        shown = shown or tuple(n for n in metrics if n in logged)[:4]
                        self.logger.scalars(self.step, logged, show=shown)
                    if evaluate is not None and self._due(cfg.log.eval_every_steps):
                        results = evaluate(self.step) or {}
                        self.logger.scalars(self.step, {f"eval/{k}": float(v) for k, v in results.items()})
                    if media is not None and self._due(cfg.log.media_every_steps):
                        for tag, video in media(self.step).items():
                            self.logger.video(self.step, tag, video)
                    if self._due(cfg.checkpoint.every_steps):
                        self.save_checkpoint()
                    if stop.requested(self.device):
                        break
                    if deadline is not None and any_rank(time.monotonic() > deadline, self.device):
                        self.logger.info(
                            f"time budget train.max_minutes={cfg.max_minutes:g} reached at step {self.step}"
                        )
                        cfg.max_steps = self.step  # the run is complete at this step
                        break
                if self._saved_step != self.step:
                    self.save_checkpoint()
                done = "finished" if self.step >= cfg.max_steps else "stopped"
                self.logger.info(
                    f"{done} at step {self.step}; checkpoint {self.checkpoints.latest()}"
                    + ("" if done == "finished" else " (continue with train.checkpoint.resume=auto)")
                )
        finally:
            close = getattr(data_iter, "close", None)
            if close is not None:
                close()
            self.logger.close_progress()
        return 0

    def close(self) -> None:
        """Release the engines and close the log files (rank 0)."""
        for engine in self.engines.values():
            engine.destroy()
        self.engines.clear()
        self.logger.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
