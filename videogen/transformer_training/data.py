"""What the transformer loop trains on: the tokenizer export, the token caches (made on rank 0), the model's
vocabulary and grid taken from the cache.

The train cache (default ``<run>/token_cache``) is made on first use and remade when the tokenizer,
the clips or the task list change; a ``cache`` given explicitly that is complete is used as it is
(its clip settings must match ``data``). ``tokenize.max_clips`` caches a subset of ``data.train``: that
many clips, evenly spaced through it (``<run>/clips/train/manifest.jsonl``, with the classes); the
held-out cache (default ``<run>/token_cache_val``) holds only the clips evaluation and sample videos
use, centered and unflipped. When image generation is trained and ``data.image_data`` is set, the
images are cached too (default ``<run>/token_cache_images``: 1-frame clips, centered crops), so image
generation trains on them as well as on the clips' first frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from videogen.data.loader import prepare_data
from videogen.data.manifest import CLASSES_FILE, write_manifest
from videogen.data.manifest_builder import load_manifest
from videogen.errors import UserError
from videogen.token_cache.format import TokenCacheError, read_index
from videogen.token_cache.reader import TokenDataset
from videogen.token_cache.writer import TokenCacheConfig, build_token_cache
from videogen.training.distributed import run_on_main
from videogen.transformer_training.training_config import IMAGE_TASK, TransformerTrainingConfig

DEFAULT_TOKENIZER = "runs/tokenizer-default/export"
CLIP_KEYS = ("num_frames", "resolution", "frame_stride", "target_fps")


def require_tokenizer(path: str) -> Path:
    """The tokenizer export folder, or a one-line :class:`UserError` saying how to make one."""
    folder = Path(path)
    if (folder / "config.yaml").is_file() and (folder / "model.safetensors").is_file():
        return folder
    if Path(path) == Path(DEFAULT_TOKENIZER):
        raise UserError(
            f"no tokenizer export at '{path}'; train one first with `./run.sh train tokenizer` "
            "(or give another export with tokenizer=DIR)"
        )
    raise UserError(
        f"tokenizer '{path}' is not a tokenizer export (config.yaml + model.safetensors); "
        "give the export/ folder of a tokenizer run with tokenizer=DIR"
    )


def cache_paths(cfg: TransformerTrainingConfig, run_dir: Path) -> tuple[Path, Path | None]:
    """(train cache, val cache or None): defaults inside the run folder; val only when ``data.val`` is set."""
    train = Path(cfg.cache) if cfg.cache else run_dir / "token_cache"
    if cfg.val_cache == "none" or (cfg.val_cache is None and not cfg.data.val):
        return train, None
    return train, Path(cfg.val_cache) if cfg.val_cache else run_dir / "token_cache_val"


def image_cache_path(cfg: TransformerTrainingConfig, run_dir: Path) -> Path | None:
    """The image token cache, or None (image generation not trained, no ``data.image_data``, or "none")."""
    if IMAGE_TASK not in cfg.masking.weights() or cfg.image_cache == "none":
        return None
    if cfg.image_cache:
        return Path(cfg.image_cache)
    return run_dir / "token_cache_images" if cfg.data.image_data else None


def _complete(cache: Path) -> dict | None:
    try:
        return read_index(cache)
    except TokenCacheError:
        return None


def ensure_cache(
    cfg: TransformerTrainingConfig,
    tokenizer: Path,
    manifest: str,
    out: Path,
    given: bool,
    held_out: bool = False,
    images: bool = False,
) -> None:
    """Make the token cache ``out`` of ``manifest`` unless it is there (rank 0 only).

    A default cache (``given=False``) is checked against the current settings and remade when they
    differ (a retrained tokenizer, other tasks or clips); a given cache that is complete is used as is,
    once its clip settings are checked against ``data``. A ``held_out`` cache holds the centered window
    of each clip, unflipped (``tokenize.windows_per_clip`` and ``flip`` are for training data). An
    ``images`` cache holds every image of the manifest as a 1-frame clip (image generation only).
    """
    index = _complete(out) if given else None
    if index is not None:
        made = index.get("data", {})
        keys = ("resolution",) if images else CLIP_KEYS
        differ = [k for k in keys if made.get(k) != getattr(cfg.data, k)]
        if differ:
            found = ", ".join(f"{k}={made.get(k)}" for k in differ)
            wanted = " ".join(f"data.{k}={made.get(k)}" for k in differ)
            raise UserError(f"token cache '{out}' was made with {found}; set {wanted} or give another cache")
        return
    tk = cfg.tokenize
    if images:
        config = TokenCacheConfig.from_data_config(
            cfg.data,
            tasks=(IMAGE_TASK,),
            kind="image",
            flip=tk.flip,
            shard_size=tk.shard_size,
            batch_size=tk.batch_size,
        )
        config.num_frames, config.frame_stride, config.target_fps = 1, 1, None
    else:
        config = TokenCacheConfig.from_data_config(
            cfg.data,
            tasks=cfg.masking.cached_tasks(),
            windows_per_clip=1 if held_out else tk.windows_per_clip,
            flip="none" if held_out else tk.flip,
            cond_frames=tk.cond_frames,
            interp_cond_frames=tk.interp_cond_frames,
            shard_size=tk.shard_size,
            batch_size=tk.batch_size,
        )
    summary = build_token_cache(tokenizer, manifest, out, config, device=tk.device, overwrite=not given)
    if summary.shards_written:
        failed = f", {summary.num_failed} clips failed to decode" if summary.num_failed else ""
        print(f"token cache '{out}': {summary.num_items} items{failed}", flush=True)


def held_out_clips(cfg: TransformerTrainingConfig) -> int:
    """Clips the held-out cache needs: the evaluation items and sample videos (at most ``max_clips``)."""
    needed = max(cfg.evaluation.num_items, cfg.sampling.num_videos, 1)
    return needed if cfg.tokenize.max_clips is None else min(needed, cfg.tokenize.max_clips)


def clip_subset(cfg: TransformerTrainingConfig, source: str, out_dir: Path, limit: int | None) -> str:
    """``source``, or a manifest of ``limit`` of its clips evenly spaced through it (so a class-sorted
    manifest keeps every class), written to ``out_dir`` with the classes. Rank 0 only."""
    if limit is None:
        return source
    manifest = load_manifest(source, "video", cfg.data.probe_workers, cfg.data.backend)
    if len(manifest) <= limit:
        return source
    picked = manifest.select(np.linspace(0, len(manifest) - 1, limit).round().astype(np.int64))
    rows = []
    for i in range(len(picked)):
        row = {
            "path": str(picked.paths[i]),
            "num_frames": int(picked.num_frames[i]),
            "fps": float(picked.fps[i]),
            "height": int(picked.heights[i]),
            "width": int(picked.widths[i]),
        }
        if picked.labels[i] >= 0:
            row["label"] = int(picked.labels[i])
        if picked.splits[i]:
            row["split"] = str(picked.splits[i])
        rows.append(row)
    out = out_dir / "manifest.jsonl"
    write_manifest(out, rows)
    if picked.classes is not None:
        (out_dir / CLASSES_FILE).write_text(json.dumps(list(picked.classes), indent=1) + "\n")
    return str(out)


def prepare_caches(
    cfg: TransformerTrainingConfig,
    tokenizer: Path,
    train: Path,
    val: Path | None,
    images: Path | None = None,
) -> None:
    """Rank 0 makes the sample data (if ``data`` points there) and the caches; every rank waits as long as
    that takes (``run_on_main``: not on the default group, whose timeout a large cache would outlast).

    A failure on rank 0 is raised there and reported on the others, so no rank waits forever.
    """

    def make() -> None:
        prepare_data(cfg.data)
        clips = Path(cfg.run.root) / cfg.run.name / "clips"
        ensure_cache(
            cfg,
            tokenizer,
            clip_subset(cfg, cfg.data.train, clips / "train", cfg.tokenize.max_clips),
            train,
            bool(cfg.cache),
        )
        if val is not None:
            manifest = clip_subset(cfg, cfg.data.val, clips / "val", held_out_clips(cfg))
            ensure_cache(cfg, tokenizer, manifest, val, bool(cfg.val_cache), held_out=True)
        if images is not None:
            if not cfg.data.image_data and _complete(images) is None:
                raise UserError(
                    f"image cache '{images}' is not complete and data.image_data names no images to "
                    "make it from; set data.image_data or image_cache=none"
                )
            given = bool(cfg.image_cache)
            ensure_cache(cfg, tokenizer, str(cfg.data.image_data), images, given, images=True)

    run_on_main(make, "prepare the token cache")


def fill_model_config(cfg: TransformerTrainingConfig, train: TokenDataset, val: TokenDataset | None) -> None:
    """Vocabulary, largest grid and classes of the model from the cache (so they never disagree)."""
    model = cfg.model
    model.codebook_size = train.codebook_size
    model.max_frames, model.max_height, model.max_width = train.grid_shape
    model.num_classes = train.num_classes
    model.validate()
    if val is not None and (val.grid_shape != train.grid_shape or val.num_classes > train.num_classes):
        raise UserError(
            f"validation cache '{val.cache_dir}' has a {val.grid_shape} grid and {val.num_classes} classes, "
            f"the train cache a {train.grid_shape} grid and {train.num_classes}; make both from the same "
            "clip settings and label set (or set val_cache=none)"
        )


def training_fps(cfg: TransformerTrainingConfig) -> float | None:
    """Frame rate of the training windows: ``data.target_fps``, else the one rate of the ``data.train``
    clips divided by ``data.frame_stride`` (None when the clips have several rates)."""
    if cfg.data.target_fps:
        return float(cfg.data.target_fps)
    manifest = load_manifest(cfg.data.train, "video", cfg.data.probe_workers, cfg.data.backend)
    rates = np.unique(np.round(np.asarray(manifest.fps, dtype=np.float64), 3))
    if len(rates) != 1 or rates[0] <= 0:
        return None
    return float(rates[0]) / cfg.data.frame_stride


def check_image_cache(train: TokenDataset, images: TokenDataset) -> None:
    """The image cache must hold 1-frame grids of the clips' frame size, with the same classes."""
    if images.grid_shape != (1, *train.grid_shape[1:]):
        raise UserError(
            f"image cache '{images.cache_dir}' has a {images.grid_shape} grid; image generation needs "
            f"(1, {train.grid_shape[1]}, {train.grid_shape[2]}) (the clips' frame size, data.resolution)"
        )
    if images.num_classes and images.classes != train.classes:
        raise UserError(
            f"image cache '{images.cache_dir}' has classes {images.classes}, the clips {train.classes}; "
            "label the images with the clips' classes (a classes.json beside both manifests)"
        )
