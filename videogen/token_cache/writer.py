"""Token cache writer: run the frozen tokenizer once over a dataset and store tokens in memmapped shards.

``build_token_cache(tokenizer_dir, manifest, out, TokenCacheConfig(...))`` (``./run.sh tokenize``)
encodes, for every clip window: the target tokens, the condition tokens of each configured COMMIT
task (the tokenizer run on the task's padded condition video, ``transformer.tasks``), and the label.
Target and condition videos of a batch go through ONE tokenizer call (concatenated on the batch axis).
Which tasks and condition fields: ``inputs.py``; the layout on disk: ``format.py``;
:class:`~videogen.token_cache.reader.TokenDataset` reads it.

An image manifest (``kind = "image"``) is cached as 1-frame clips, one item per image (for image
generation: ``tasks = ("image_generation",)``, ``num_frames = 1``).

Windows are deterministic: with ``windows_per_clip = 1`` the centered window of
``VideoClipDataset(train=False)`` (center crop, no flip); with K > 1, K windows whose starts are evenly
spaced from the first possible start to the last. ``flip = "both"`` also stores the horizontally
flipped clip as a separate item right after the original. Latent condition masks depend only on the
task and the grid (dynamic tasks: on time), so each task's mask is stored once (``masks/<task>.npy``);
this is checked on every batch.

Resuming: the clip windows are cut into shards of ``shard_size`` windows. A shard is written into a
temporary folder and renamed into place when complete; on a rerun, shards whose ``meta.json`` matches
the settings and whose files match their recorded size and crc32 are skipped, anything else
(temporary folders, missing or damaged files) is rebuilt. ``index.json`` is written last, atomically.
Clips that fail to decode are left out, counted and listed (``index.json`` ``failed``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from videogen import atomic
from videogen.data.failures import DataError
from videogen.data.loader import worker_init
from videogen.data.video_dataset import VideoClipDataset
from videogen.devices import pick_device
from videogen.errors import UserError
from videogen.token_cache.cache_config import TokenCacheConfig
from videogen.token_cache.format import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    MASKS_DIR,
    SHARDS_DIR,
    WEIGHTS_FILE,
    complete_shard,
    file_sha256,
    fingerprint,
    prepare_out,
    shard_name,
    token_dtype,
    tokenizer_config_hash,
    write_shard,
)
from videogen.token_cache.inputs import (
    ClipWindows,
    TaskPlan,
    encode_batch,
    plan_tasks,
    select_clips,
)
from videogen.tokenizer import VideoTokenizer
from videogen.transformer.tasks import get_task

logger = logging.getLogger("videogen.data")

MAX_LISTED_FAILURES = 100


@dataclass(frozen=True)
class TokenCacheSummary:
    out: Path
    num_items: int
    num_shards: int
    shards_written: int
    shards_skipped: int
    num_failed: int


# ----------------------------------------------------------------------------- encoding


@dataclass
class _Job:
    """What the encoding loop needs: inputs, settings, shard bounds (in clip windows) and finished metas."""

    tokenizer: torch.nn.Module
    clips: VideoClipDataset
    rows: np.ndarray  # manifest row of each clip
    plans: list[TaskPlan]
    cfg: TokenCacheConfig
    settings: dict
    bounds: list[tuple[int, int]]
    shards_dir: Path
    metas: dict[int, dict]


def _shard_arrays(
    items: list[dict], fields: list[str], grid: tuple, dtype: np.dtype
) -> dict[str, np.ndarray]:
    arrays = {
        name: np.stack([it[name] for it in items]) if items else np.zeros((0, *grid), dtype)
        for name in fields
    }
    for name, kind in (("labels", np.int64), ("rows", np.int64), ("windows", np.int64), ("flips", np.uint8)):
        arrays[name] = np.asarray([it[name] for it in items], dtype=kind)
    return arrays


def _encode_pending(job: _Job, units: np.ndarray, progress: bool) -> None:
    """Decode ``units`` (clip windows, in worker processes), encode them here in batches, and write each
    shard as soon as all of its clip windows are in."""
    cfg, settings = job.cfg, job.settings
    device = next(job.tokenizer.parameters()).device
    grid, dtype = tuple(settings["grid_shape"]), token_dtype(settings["codebook_size"])
    fields = ["tokens"] + sorted({t["cond_field"] for t in settings["tasks"].values() if t["cond_field"]})
    k, flips, workers = cfg.windows_per_clip, (2 if cfg.flip == "both" else 1), cfg.num_workers
    loader = DataLoader(
        ClipWindows(job.clips, units, k),
        batch_size=cfg.batch_size,
        num_workers=workers,
        multiprocessing_context="fork" if workers > 0 else None,
        worker_init_fn=worker_init if workers > 0 else None,
        timeout=300 if workers > 0 else 0,
    )
    open_shards: dict[int, dict] = {}
    total = settings["num_units"]
    bar = tqdm(total=total, initial=total - len(units), desc="tokenize", unit="clip", disable=not progress)
    num_failed = sum(len(m["failed"]) for m in job.metas.values())
    for batch in loader:
        ok = batch["ok"]
        encoded = {}
        if ok.any():
            videos = batch["video"][ok].to(device)  # (N, 3, T, H, W)
            if flips == 2:  # items: each clip, then its mirror image
                videos = torch.stack([videos, videos.flip(-1)], dim=1).flatten(0, 1)
            encoded = {
                name: tokens.cpu().numpy().astype(dtype)
                for name, tokens in encode_batch(job.tokenizer, videos, job.plans, grid).items()
            }
        j = 0
        for i, unit in enumerate(batch["unit"].tolist()):
            shard = unit // cfg.shard_size
            buf = open_shards.setdefault(shard, {"done": 0, "items": [], "failed": []})
            buf["done"] += 1
            row, window = divmod(unit, k)
            if ok[i]:
                for flip in range(flips):
                    item = {name: value[j] for name, value in encoded.items()}
                    label, source_row = int(job.clips.manifest.labels[row]), int(job.rows[row])
                    buf["items"].append(
                        item | {"labels": label, "rows": source_row, "windows": window, "flips": flip}
                    )
                    j += 1
            else:
                num_failed += 1
                buf["failed"].append(
                    {"row": int(job.rows[row]), "window": window, "error": batch["error"][i]}
                )
                logger.warning("leaving out %s: %s", job.clips.manifest.paths[row], batch["error"][i])
            start, end = job.bounds[shard]
            if buf["done"] == end - start:
                del open_shards[shard]
                meta = {
                    "fingerprint": settings["fingerprint"],
                    "start_unit": start,
                    "num_units": end - start,
                    "count": len(buf["items"]),
                    "failed": buf["failed"],
                }
                arrays = _shard_arrays(buf["items"], fields, grid, dtype)
                job.metas[shard] = write_shard(job.shards_dir, shard, arrays, meta)
        bar.update(len(ok))
        bar.set_postfix(failed=num_failed, refresh=False)
    bar.close()


# ----------------------------------------------------------------------------- the writer


def cache_settings(
    tokenizer,
    tokenizer_dir: Path,
    manifest: Path,
    cfg: TokenCacheConfig,
    plans: list[TaskPlan],
    num_clips: int,
) -> dict:
    """Everything that decides the cache's contents (and where its inputs live), with its fingerprint."""
    data_fields = ("split", "num_frames", "resolution", "frame_stride", "target_fps", "backend", "too_short")
    if cfg.kind != "video":  # only then: the settings (and fingerprints) of video caches stay as they were
        data_fields = ("kind", *data_fields)
    settings = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "tokenizer": {
            "dir": str(tokenizer_dir.resolve()),
            "config_hash": tokenizer_config_hash(tokenizer),
            "weights_sha256": file_sha256(tokenizer_dir / WEIGHTS_FILE),
        },
        "data": {
            "manifest": str(manifest.resolve()),
            "manifest_sha256": file_sha256(manifest) if manifest.is_file() else None,
            **{name: getattr(cfg, name) for name in data_fields},
            "windows_per_clip": cfg.windows_per_clip,
            "windows": "center" if cfg.windows_per_clip == 1 else "evenly spaced starts, first to last",
            "crop": "center",
            "flip": cfg.flip,
        },
        "tasks": {
            p.name: {
                "code": get_task(p.name).code,
                "family": get_task(p.name).family,
                "task_id": get_task(p.name).task_id,
                "class_conditional": get_task(p.name).class_conditional,
                "options": p.options,
                "cond_field": p.cond_field,
                "mask_file": f"{MASKS_DIR}/{p.name}.npy",
            }
            for p in plans
        },
        "grid_shape": list(tokenizer.latent_shape(cfg.num_frames, cfg.resolution, cfg.resolution)),
        "codebook_size": tokenizer.codebook_size,
        "dtype": token_dtype(tokenizer.codebook_size).name,
        "shard_size": cfg.shard_size,
        "num_clips": num_clips,
        "num_units": num_clips * cfg.windows_per_clip,  # clip windows (items = units x flips - failures)
    }
    settings["fingerprint"] = fingerprint(settings)
    return settings


def build_token_cache(
    tokenizer_dir: str | Path,
    manifest: str | Path,
    out: str | Path,
    config: TokenCacheConfig | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TokenCacheSummary:
    """Encode every clip window of ``manifest`` with the tokenizer export ``tokenizer_dir`` into ``out``.

    Resumable: complete, intact shards made with the same settings are kept. Raises :class:`UserError`
    for bad input and when ``out`` holds a cache made with other settings (unless ``overwrite``).
    ``device``: "auto" / None (CUDA when available), "cpu", "cuda", "cuda:N".
    """
    cfg = config or TokenCacheConfig()
    cfg.validate()
    tokenizer_dir, manifest, out = Path(tokenizer_dir), Path(manifest), Path(out)
    device = pick_device(device)
    tokenizer = VideoTokenizer.from_pretrained(tokenizer_dir).eval()
    try:
        grid = tokenizer.latent_shape(cfg.num_frames, cfg.resolution, cfg.resolution)
    except UserError as e:
        raise UserError(
            f"--num-frames {cfg.num_frames} / --resolution {cfg.resolution} do not fit the tokenizer: {e}"
        ) from None
    cond_frames = (
        cfg.cond_frames
        if cfg.cond_frames is not None
        else min(1 + tokenizer.temporal_factor, cfg.num_frames - 1)
    )
    plans = plan_tasks(
        tuple(cfg.tasks), cfg.num_frames, cfg.resolution, grid, cond_frames, cfg.interp_cond_frames
    )
    clips, rows, classes = select_clips(manifest, cfg)
    settings = cache_settings(tokenizer, tokenizer_dir, manifest, cfg, plans, len(clips))
    prepare_out(out, settings, overwrite)
    for plan in plans:
        with atomic.replacing(out / MASKS_DIR / f"{plan.name}.npy", durable=True) as tmp:
            np.save(tmp, plan.mask)

    size, num_units = cfg.shard_size, settings["num_units"]
    bounds = [(a, min(a + size, num_units)) for a in range(0, num_units, size)]
    job = _Job(tokenizer, clips, rows, plans, cfg, settings, bounds, out / SHARDS_DIR, metas={})
    for s, (a, b) in enumerate(bounds):
        expected = {"fingerprint": settings["fingerprint"], "start_unit": a, "num_units": b - a}
        if (meta := complete_shard(job.shards_dir, s, expected)) is not None:
            job.metas[s] = meta
    pending = [s for s in range(len(bounds)) if s not in job.metas]
    if pending:
        (out / INDEX_FILE).unlink(missing_ok=True)  # incomplete until the last shard is in
        tokenizer.to(device)
        _encode_pending(job, np.concatenate([np.arange(*bounds[s]) for s in pending]), progress)

    shards = [
        {"name": shard_name(s), "start_unit": a, "num_units": b - a, "count": job.metas[s]["count"]}
        | {"files": job.metas[s]["files"]}
        for s, (a, b) in enumerate(bounds)
    ]
    failed = [f for s in range(len(bounds)) for f in job.metas[s]["failed"]]
    num_items = sum(shard["count"] for shard in shards)
    if num_items == 0:
        raise DataError(f"no clip of '{manifest}' could be decoded ({len(failed)} failed); check the files")
    index = {
        **settings,
        **classes,
        "num_items": num_items,
        "num_failed": len(failed),
        "failed": failed[:MAX_LISTED_FAILURES],
        "shards": shards,
    }
    atomic.write_json(out / INDEX_FILE, index, durable=True)
    return TokenCacheSummary(
        out, num_items, len(bounds), len(pending), len(bounds) - len(pending), len(failed)
    )
