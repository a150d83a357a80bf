"""``build_loader``: the DataLoader (and its resumable sampler) for a ``DataConfig`` split.

Workers are forked, not persistent (a fresh fork per epoch sees the epoch set on the dataset), and
get a ``timeout`` so a hung native decoder fails the run instead of stalling it: the stall becomes a
one-line :class:`DataError` naming the files of the batch it waited for, and the stuck workers are
killed (a worker ignores SIGTERM, so a plain shutdown would leave it, and the interpreter would wait
for it at exit forever). Bad input found in a worker (a :class:`~videogen.errors.UserError` such as
"10 samples in a row failed to decode", or an ``OSError``) ends the run as the same one line it would
be without workers, not as torch's multi-line copy of the worker's traceback; the workers are stopped
first. A worker also dies with its parent process, whatever kills that. Each
iteration of the loader is one epoch (or the rest of one, after a resume); the sampler's
``state_dict()`` always counts the batches the caller has received, not the ones workers fetched ahead.
"""

from __future__ import annotations

import re
import signal
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from videogen.data.config import DEFAULT_SAMPLE_DIR, DataConfig
from videogen.data.failures import DataError
from videogen.data.image_dataset import ImageDataset
from videogen.data.manifest_builder import load_manifest
from videogen.data.mixture import JointBatchSampler, JointDataset
from videogen.data.samplers import EpochBatchSampler, ResumableSampler
from videogen.data.video_dataset import VideoClipDataset
from videogen.errors import UserError

if TYPE_CHECKING:
    from videogen.data.sample_data import SampleParams


DEFAULT_TIMEOUT_S = 300.0  # for loaders built without one (a batch should take seconds, not minutes)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent exits (elsewhere: nothing)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass


def worker_init(worker_id: int) -> None:
    """Every DataLoader worker of the project (training batches and the token cache's tokenizer inputs)."""
    # The main process turns SIGINT/SIGTERM into checkpoint-then-stop; workers must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()  # ... nor outlive it: a worker stuck in a decoder would otherwise be orphaned
    torch.set_num_threads(1)  # one process per core already; intra-op threads would oversubscribe


def _stop_workers(batches: Any, kill: bool = False) -> None:
    """Shut down the workers of a DataLoader iterator; SIGKILL any still alive (stuck ones ignore SIGTERM)."""
    workers = list(getattr(batches, "_workers", ()))
    if kill:  # stuck: do not wait for them to answer the shutdown
        if getattr(batches, "_worker_pids_set", False):  # else torch reports our kill as a worker crash
            torch.utils.data._utils.signal_handling._remove_worker_pids(id(batches))
            batches._worker_pids_set = False
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=10)


_WORKER_ERROR = re.compile(r"^Caught (\w+) in DataLoader worker process \d+")


def worker_error(error: BaseException) -> BaseException | None:
    """The one-line error to raise for ``error`` when it is torch's re-raise of bad input found in a
    worker (a ``UserError`` or an ``OSError``); None for anything else (a bug keeps its traceback).

    torch re-raises a worker's exception as the same type with the message ``Caught X in DataLoader
    worker process N.`` plus the whole worker traceback; the original message is its last entry.
    """
    text = str(error)
    if not _WORKER_ERROR.match(text) or not isinstance(error, (UserError, OSError)):
        return None
    names = [f"{type(error).__module__}.{type(error).__qualname__}", type(error).__qualname__]
    original = next((text.split(f"\n{n}: ", 1)[-1] for n in names if f"\n{n}: " in text), "")
    original = original.strip() or traceback.format_exception_only(type(error), error)[-1].strip()
    if isinstance(error, UserError):
        try:
            return type(error)(original)
        except Exception:  # a subclass with another signature
            return UserError(original)
    return DataError(f"a data worker failed: {original}; check the data files and their permissions")


class EpochDataLoader(DataLoader):
    """A DataLoader over an :class:`EpochBatchSampler` that keeps the sampler's state = batches consumed.

    ``iter(loader)`` yields the rest of the current epoch; the epoch is set on the dataset (its
    random draws depend on it; ``dataset.set_epoch(epoch)`` if it has one) before workers are forked.
    """

    batch_sampler: EpochBatchSampler

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        if kwargs.get("num_workers", 0) > 0:  # workers never wait forever, and never outlive their process
            kwargs["timeout"] = kwargs.get("timeout") or DEFAULT_TIMEOUT_S
            kwargs["worker_init_fn"] = kwargs.get("worker_init_fn") or worker_init
        super().__init__(dataset, **kwargs)

    def __iter__(self) -> Iterator[dict]:
        sampler = self.batch_sampler
        if sampler.position >= len(sampler):
            sampler.set_state(sampler.epoch + 1, 0)
        epoch, consumed = sampler.epoch, sampler.position
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        batches = super().__iter__()
        try:
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except RuntimeError as e:
                    if not str(e).startswith("DataLoader timed out"):
                        raise
                    _stop_workers(batches, kill=True)
                    raise DataError(self._stall_message(epoch, consumed)) from None
                except (UserError, OSError) as e:
                    one_line = worker_error(e)
                    if one_line is None:
                        raise
                    _stop_workers(batches, kill=True)  # the others may be stuck; none is left behind
                    raise one_line from None
                consumed += 1
                sampler.set_state(epoch, consumed)
                yield batch
        finally:  # also when the caller stops early or fails: no worker is left behind
            if not self.persistent_workers:
                _stop_workers(batches)
        sampler.set_state(epoch + 1, 0)

    def _stall_message(self, epoch: int, position: int) -> str:
        """One line: how long, which samples (and files) the loader was waiting for, what to do."""
        waited = ""
        try:
            indices = [int(i) for i in self.batch_sampler.batch(epoch, position)]
            paths = getattr(getattr(self.dataset, "manifest", None), "paths", None)
            files = [str(paths[i]) for i in indices[:4]] if paths is not None else []
            waited = f" waiting for samples {indices}" + (f" ({', '.join(files)})" if files else "")
        except Exception:  # naming the files is a courtesy; the stall is the error
            pass
        return (
            f"data loading stalled: no batch within data.timeout_s = {self.timeout:g} s{waited}; a decoder "
            "is stuck on a damaged file or a slow disk: check or drop those files, or raise data.timeout_s"
        )


def _video_dataset(cfg: DataConfig, source: str, split: str, train: bool, seed: int) -> VideoClipDataset:
    manifest = load_manifest(source, "video", cfg.probe_workers, cfg.backend).for_split(split)
    return VideoClipDataset(
        manifest,
        num_frames=cfg.num_frames,
        resolution=cfg.resolution,
        frame_stride=cfg.frame_stride,
        target_fps=cfg.target_fps,
        train=train,
        backend=cfg.backend,
        too_short=cfg.too_short,
        random_flip=cfg.random_flip,
        seed=seed,
        max_attempts=cfg.max_attempts,
        preload=cfg.preload and train,
        preload_max_gb=cfg.preload_max_gb,
        crop_size=cfg.crop_size if train else None,
    )


def _image_dataset(
    cfg: DataConfig, split: str, train: bool, seed: int, videos: VideoClipDataset | None = None
) -> Dataset:
    """The images of image batches: ``image_data`` files, or (``image_source: clip_frames``) one random
    frame of a training clip per item, sharing ``videos``' preloaded frames when given."""
    if cfg.image_source == "clip_frames":
        source = videos.manifest if videos is not None else cfg.train
        return VideoClipDataset(
            source
            if videos is not None
            else load_manifest(source, "video", cfg.probe_workers, cfg.backend).for_split(split),
            num_frames=1,
            resolution=cfg.resolution,
            frame_stride=cfg.frame_stride,
            target_fps=cfg.target_fps,
            train=train,
            backend=cfg.backend,
            random_flip=cfg.random_flip,
            seed=seed + 1,  # other draws than the clips'
            max_attempts=cfg.max_attempts,
            preload=cfg.preload and train and videos is None,
            preload_max_gb=cfg.preload_max_gb,
            cache=videos.cache if videos is not None else None,
            crop_size=cfg.crop_size if train else None,
        )
    manifest = load_manifest(cfg.image_data, "image", cfg.probe_workers).for_split(split)
    return ImageDataset(
        manifest,
        resolution=cfg.resolution,
        train=train,
        random_flip=cfg.random_flip,
        seed=seed,
        max_attempts=cfg.max_attempts,
        preload=cfg.preload and train,
        preload_max_gb=cfg.preload_max_gb,
        crop_size=cfg.crop_size if train else None,
    )


def _image_source(cfg: DataConfig) -> str:
    return f"frames of {cfg.train}" if cfg.image_source == "clip_frames" else str(cfg.image_data)


def _check_batches(
    sampler: ResumableSampler, dataset: Dataset, what: str, batch_size: int, world_size: int
) -> None:
    if len(sampler) == 0:
        raise DataError(
            f"{what} has {len(dataset)} usable samples, fewer than one global batch of "
            f"{batch_size * world_size} ({batch_size} per process x {world_size} processes); "
            "add data or lower the batch size"
        )


def build_loader(
    cfg: DataConfig,
    split: str = "train",
    batch_size: int = 8,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> tuple[EpochDataLoader, EpochBatchSampler]:
    """The loader and sampler of ``split`` (``"train"``: ``cfg.train`` (+ images); ``"val"``: ``cfg.val``).

    Batches are dicts: ``video`` float32 ``(B, 3, T, H, W)`` in [-1, 1] (``T = 1`` in image batches),
    ``label``, ``index``, ``num_failed`` int64 ``(B,)``. Training batches are shuffled and full;
    validation batches are in order, centered, and cover every clip (the last batch may be
    smaller and, with several ranks, padded with clips from the start). Save
    ``sampler.state_dict()`` in checkpoints and ``load_state_dict`` it before iterating to resume.
    Raises :class:`DataError` when the split has no full batch.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    train = split == "train"
    if not train and not cfg.val:
        raise DataError("data.val is not set; give a validation manifest or folder")
    source = cfg.train if train else cfg.val
    sampler_kwargs = dict(seed=seed, rank=rank, world_size=world_size, shuffle=train, drop_last=train)
    dataset: Dataset
    if train and cfg.image_ratio >= 1.0:
        dataset = _image_dataset(cfg, split, train, seed)
        image_batch = cfg.image_batch_size or batch_size
        sampler = ResumableSampler(len(dataset), image_batch, **sampler_kwargs)
        _check_batches(sampler, dataset, f"image data '{_image_source(cfg)}'", image_batch, world_size)
    else:
        videos = _video_dataset(cfg, source, split, train, seed)
        sampler = ResumableSampler(len(videos), batch_size, **sampler_kwargs)
        _check_batches(sampler, videos, f"data '{source}'", batch_size, world_size)
        dataset = videos
        if train and cfg.image_ratio > 0:
            images = _image_dataset(cfg, split, train, seed, videos)
            image_batch = cfg.image_batch_size or batch_size
            image_sampler = ResumableSampler(len(images), image_batch, **sampler_kwargs)
            _check_batches(
                image_sampler, images, f"image data '{_image_source(cfg)}'", image_batch, world_size
            )
            dataset = JointDataset(videos, images)
            sampler = JointBatchSampler(sampler, image_sampler, cfg.image_ratio, len(videos), seed)
    workers = cfg.num_workers
    loader = EpochDataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        multiprocessing_context="fork" if workers > 0 else None,
        persistent_workers=False,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        timeout=cfg.timeout_s if workers > 0 else 0,
        worker_init_fn=worker_init if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
    )
    return loader, sampler


def prepare_data(
    cfg: DataConfig, params: SampleParams | None = None, more: Iterable[str | None] = ()
) -> None:
    """Generate the sample data (with ``params``) if ``cfg`` (or a manifest in ``more``) points into
    ``data/sample`` and it is missing.

    Safe to call from every rank at once (the folder appears atomically). Other paths are left alone.
    """
    from videogen.data.sample_data import ensure_sample_data

    sample_root = Path(DEFAULT_SAMPLE_DIR).resolve()
    for path in (cfg.train, cfg.val, cfg.image_data, *more):
        if path and not Path(path).exists() and Path(path).resolve().parent == sample_root:
            ensure_sample_data(sample_root, params)
            return
