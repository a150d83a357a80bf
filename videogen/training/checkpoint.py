"""Atomic, resumable training checkpoints.

Layout of ``<run>/checkpoints/``::

    latest                      text: the name of the newest complete checkpoint
    step_00001000/
      meta.json                 step, engines, world size, the run's config (written last: marks the
                                folder complete)
      <engine>/                 DeepSpeed save_checkpoint (weights, optimizer, LR scheduler, step)
      ema_<engine>.safetensors  fp32 EMA weights
      client_state.pt           loop state: registered objects (LeCam, data position), guard counters
      rng/rank_00000.pt         python / numpy / torch RNG of each rank
    .tmp-step_00001500/         a save in progress (never the latest; removed by the next save)

A save writes everything into ``.tmp-step_N``, then renames it to ``step_N`` and only then replaces
``latest`` (itself through a rename), so a crash at any point leaves ``latest`` on the previous
complete checkpoint. Every rank must call :meth:`CheckpointManager.save` / ``load`` (DeepSpeed
writes per-rank optimizer shards); the run directory must be on a filesystem all ranks share. A
checkpoint that cannot be read back (a damaged file) is refused with one line naming the previous
complete one; nothing is ever deleted on resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from videogen import atomic
from videogen.collectives import barrier
from videogen.errors import UserError
from videogen.training.distributed import DistInfo
from videogen.training.ema import EMA
from videogen.training.guard import TrainingDivergedError, all_finite
from videogen.training.rng_state import load_rng_state, save_rng_state

META_FILE = "meta.json"
LATEST_FILE = "latest"
CLIENT_FILE = "client_state.pt"
TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"^step_(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def is_complete(path: Path) -> bool:
    return (path / META_FILE).is_file()


def read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise UserError(
            f"checkpoint '{path}' has an unreadable {META_FILE} ({e}); resume from another checkpoint "
            "(train.checkpoint.resume=PATH) or start a new run (run.name=NEW)"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


class CheckpointManager:
    """Save / find / load checkpoints under ``root`` keeping the newest ``keep_last`` (0 = all)."""

    def __init__(self, root: str | Path, keep_last: int, dist: DistInfo):
        self.root = Path(root)
        self.keep_last = keep_last
        self.dist = dist

    # ------------------------------------------------------------------ finding

    def complete(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as ``(step, path)``, oldest first."""
        found = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                match = _NAME.match(path.name)
                if match and path.is_dir() and is_complete(path):
                    found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest complete checkpoint: the one ``latest`` names, unless a save completed after
        ``latest`` was written (killed between its folder's rename and the pointer's update: its
        ``meta.json`` is newer than ``latest``); the newest complete one when ``latest`` names none."""
        complete = self.complete()
        pointer = self.root / LATEST_FILE
        named = None
        if pointer.is_file():
            path = self.root / pointer.read_text().strip()
            if path.is_dir() and is_complete(path):
                named = path
        if named is None:
            return complete[-1][1] if complete else None
        written = pointer.stat().st_mtime_ns
        named_step = int(_NAME.match(named.name).group(1)) if _NAME.match(named.name) else -1
        after = [
            p for step, p in complete if step > named_step and (p / META_FILE).stat().st_mtime_ns >= written
        ]
        return after[-1] if after else named

    def repair(self) -> None:
        """Finish what a killed save left undone (rank 0): ``latest`` names :meth:`latest`, and no
        temporary file of ``latest`` is left behind. Half-written ``.tmp-step_*`` folders go at the next save."""
        newest = self.latest()
        pointer = self.root / LATEST_FILE
        if newest is not None and (not pointer.is_file() or pointer.read_text().strip() != newest.name):
            atomic.write_text(pointer, newest.name + "\n", durable=True)
        for leftover in atomic.leftovers(pointer):
            leftover.unlink(missing_ok=True)

    def resolve(self, resume: str) -> Path | None:
        """``"auto"`` -> :meth:`latest` (None when there is none); ``"never"`` -> None; else a path."""
        if resume == "never":
            return None
        if resume == "auto":
            return self.latest()
        path = Path(resume)
        if path.is_dir() and is_complete(path):
            return path
        if path.is_dir() and (path / LATEST_FILE).is_file():  # a checkpoints/ folder
            found = CheckpointManager(path, 0, self.dist).latest()
            if found is not None:
                return found
        raise UserError(
            f"resume checkpoint '{resume}' is not a complete videogen checkpoint (no {META_FILE}); "
            "give a step_* folder, a checkpoints/ folder, 'auto' or 'never'"
        )

    # ------------------------------------------------------------------ saving

    def save(
        self,
        step: int,
        engines: dict[str, Any],
        emas: dict[str, EMA],
        client_state: dict[str, Any],
        config: dict[str, Any] | None = None,
    ) -> Path:
        """Write checkpoint ``step`` atomically (every rank calls this). Returns its folder.

        ``config``: the run's flattened config (JSON values), kept in ``meta.json`` for resume checks.

        Refuses (``TrainingDivergedError``) when any weight is non-finite, so a diverged run never
        leaves a poisoned checkpoint behind.
        """
        final = self.root / checkpoint_name(step)
        if is_complete(final):  # e.g. a stop signal right after a periodic save
            if self.dist.is_main:
                self.repair()
            return final
        tensors = [p for engine in engines.values() for p in engine.module.parameters()]
        tensors += [t for ema in emas.values() for t in ema.state_dict().values()]
        if not all_finite(tensors, self.dist.device):
            raise TrainingDivergedError(
                f"refusing to write checkpoint {final}: some weights are not finite; "
                f"the newest good checkpoint is {self.latest()}"
            )
        tmp = self.root / (TMP_PREFIX + final.name)
        if self.dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "rng").mkdir(parents=True)
        barrier()
        for name, engine in engines.items():
            engine.save_checkpoint(str(tmp), tag=name, save_latest=False)
        save_rng_state(tmp / "rng" / f"rank_{self.dist.rank:05d}.pt")
        if self.dist.is_main:
            for name, ema in emas.items():
                ema.save(tmp / f"ema_{name}.safetensors")
            torch.save(client_state, tmp / CLIENT_FILE)
        barrier()
        if self.dist.is_main:
            meta = {
                "step": step,
                "engines": sorted(engines),
                "emas": sorted(emas),
                "world_size": self.dist.world_size,
                "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            if config is not None:
                meta["config"] = config
            atomic.write_json(tmp / META_FILE, meta, indent=2, durable=True)
            os.replace(tmp, final)
            atomic.fsync(self.root)
            atomic.write_text(self.root / LATEST_FILE, final.name + "\n", durable=True)
            self._prune(keep=final)
        barrier()
        return final

    def _prune(self, keep: Path) -> None:
        for path in self.root.glob(TMP_PREFIX + "*"):
            shutil.rmtree(path, ignore_errors=True)
        if self.keep_last <= 0:
            return
        complete = [path for _, path in self.complete()]
        for path in complete[: max(0, len(complete) - self.keep_last)]:
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ loading

    def load(self, path: Path, engines: dict[str, Any], emas: dict[str, EMA]) -> dict[str, Any]:
        """Restore engines (weights, optimizer, scheduler, step), EMAs and this rank's RNG.

        Returns the client state written by :meth:`save`. A file that cannot be read back (damaged,
        truncated, unreadable, or for another model) is a :class:`UserError` naming the checkpoint.
        """
        meta = read_meta(path)
        missing = [name for name in engines if name not in meta["engines"]]
        missing += [f"ema_{name}" for name in emas if name not in meta.get("emas", [])]
        if missing:
            raise UserError(
                f"checkpoint '{path}' has no {', '.join(missing)} (it holds {', '.join(meta['engines'])}): a "
                "resumed run cannot add a model; use the settings that wrote it, or start a new run (run.name=NEW)"
            )
        try:
            for name, engine in engines.items():
                loaded, _ = engine.load_checkpoint(
                    str(path), tag=name, load_optimizer_states=True, load_lr_scheduler_states=True
                )
                if loaded is None:
                    raise UserError(f"DeepSpeed could not load '{path / name}'")
            for name, ema in emas.items():
                ema.load(path / f"ema_{name}.safetensors")
            rng_file = path / "rng" / f"rank_{self.dist.rank:05d}.pt"
            if rng_file.is_file():  # absent when the world size grew: the caller reseeds
                load_rng_state(rng_file)
            client = torch.load(path / CLIENT_FILE, map_location="cpu", weights_only=True)
        except UserError:
            raise
        except Exception as e:  # whatever the loaders raise on a damaged file
            older = [p for step, p in self.complete() if step < int(meta.get("step", 0))]
            hint = f"train.checkpoint.resume={older[-1]}" if older else "train.checkpoint.resume=PATH"
            raise UserError(
                f"checkpoint '{path}' cannot be loaded ({_first_line(e)}); it is damaged or was written "
                f"for another model: resume from an older one ({hint}) or start a new run (run.name=NEW)"
            ) from None
        client["restored_rng"] = rng_file.is_file()
        return client
