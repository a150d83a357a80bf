"""The six stages of ``./run.sh demo``, each a function ``stage(ctx) -> info`` (info goes into ``demo.json``).

1. ``data``: the sample data (made if missing); 2. ``tokenizer``: training + export into
``<out>/tokenizer/``; 3. ``cache``: the transformer's token caches of the train and val clips (made the
way the transformer loop makes them on first use); 4. ``transformer``: training + export into
``<out>/transformer/``; 5. ``showcase``: every use on held-out clips, plus one image and one clip per
class; 6. ``evaluate``: frame prediction on held-out clips against the baselines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videogen.demo.budget import Clock, DemoState
from videogen.demo.config import DemoConfig
from videogen.demo.training import TrainingStage, has_export, run_training

TOKENIZER, TRANSFORMER = "tokenizer", "transformer"


@dataclass
class DemoContext:
    """Where the demo writes, what it was asked for, its clock, its record, and where lines go."""

    out: Path
    cfg: DemoConfig
    clock: Clock
    state: DemoState
    log: Callable[[str], Any]

    @property
    def train_manifest(self) -> Path:
        return Path(self.cfg.data.root) / "train.jsonl"

    @property
    def val_manifest(self) -> Path:
        return Path(self.cfg.data.root) / "val.jsonl"

    def run_dir(self, name: str) -> Path:
        return self.out / name

    def export(self, name: str) -> Path:
        return self.out / name / "export"

    def overrides(self, name: str) -> list[str]:
        """Where a training run lives and which data it reads, then the demo config's own overrides."""
        common = [
            f"run.root={self.out}",
            f"run.name={name}",
            f"data.train={self.train_manifest}",
            f"data.val={self.val_manifest}",
        ]
        if name == TRANSFORMER:
            common.append(f"tokenizer={self.export(TOKENIZER)}")
        return common + list(getattr(self.cfg, name).overrides)


# ----------------------------------------------------------------------------- 1. data


def data_stage(ctx: DemoContext) -> dict[str, Any]:
    from videogen.data.manifest import read_manifest
    from videogen.data.sample_data import ensure_sample_data

    ensure_sample_data(ctx.cfg.data.root, ctx.cfg.data.params())
    train, val = read_manifest(ctx.train_manifest), read_manifest(ctx.val_manifest)
    ctx.log(f"[demo] data: {len(train)} training and {len(val)} held-out clips in {ctx.cfg.data.root}")
    return {"train_clips": len(train), "val_clips": len(val), "root": str(ctx.cfg.data.root)}


def data_ready(ctx: DemoContext) -> bool:
    return ctx.train_manifest.is_file() and ctx.val_manifest.is_file()


# ----------------------------------------------------------------------------- 2. and 4. training


def tokenizer_stage(ctx: DemoContext) -> dict[str, Any]:
    from videogen.tokenizer_training.training_config import load_training_config

    path, overrides = ctx.cfg.tokenizer.path(), ctx.overrides(TOKENIZER)
    train = load_training_config(path, overrides).train  # checks the config before anything runs
    stage = TrainingStage(
        TOKENIZER,
        path,
        ctx.run_dir(TOKENIZER),
        train.max_steps,
        train.schedule.warmup_steps,
        overrides,
        ["eval.final='off'"],
    )
    info = run_training(stage, ctx.cfg.budget, ctx.clock, ctx.cfg.budget.tokenizer_end, ctx.state, ctx.log)
    return {**info, "held_out": tokenizer_metrics(ctx)}


def tokenizer_metrics(ctx: DemoContext) -> dict[str, Any]:
    """Reconstruction PSNR / SSIM / codebook usage of the tokenizer export on the val clips.

    The training loop evaluates its export at the end (``eval.json``); without that file it is done here.
    """
    import json

    eval_file = ctx.run_dir(TOKENIZER) / "eval.json"
    if eval_file.is_file():
        metrics = json.loads(eval_file.read_text())["tokenizer"]
    else:
        from videogen.evaluation.evaluate_tokenizer import evaluate_tokenizer
        from videogen.inference.geometry import read_run_data_config
        from videogen.tokenizer import VideoTokenizer

        run = read_run_data_config(ctx.export(TOKENIZER))
        model = VideoTokenizer.from_pretrained(ctx.export(TOKENIZER))
        metrics = evaluate_tokenizer(
            model, ctx.val_manifest, num_frames=run["num_frames"], resolution=run["resolution"]
        )["tokenizer"]
    code = metrics["codebook"]
    return {
        "psnr": metrics["psnr"],
        "ssim": metrics["ssim"],
        "codebook_usage": code["usage_fraction"],
        "used_codes": code["used_codes"],
        "codebook_size": code["codebook_size"],
        "perplexity": code["perplexity"],
        "num_clips": metrics["num_clips"],
        "num_frames": metrics.get("num_frames"),
        "resolution": metrics.get("resolution"),
    }


def transformer_stage(ctx: DemoContext) -> dict[str, Any]:
    from videogen.transformer_training.training_config import load_training_config

    path, overrides = ctx.cfg.transformer.path(), ctx.overrides(TRANSFORMER)
    train = load_training_config(path, overrides).train
    probe_only = ["sampling.num_videos=0"]  # same held-out clips (and cache) as the real run
    stage = TrainingStage(
        TRANSFORMER,
        path,
        ctx.run_dir(TRANSFORMER),
        train.max_steps,
        train.schedule.warmup_steps,
        overrides,
        probe_only,
    )
    return run_training(stage, ctx.cfg.budget, ctx.clock, ctx.cfg.budget.transformer_end, ctx.state, ctx.log)


def tokenizer_ready(ctx: DemoContext) -> bool:
    return has_export(ctx.run_dir(TOKENIZER))


def transformer_ready(ctx: DemoContext) -> bool:
    return has_export(ctx.run_dir(TRANSFORMER))


# ----------------------------------------------------------------------------- 3. token cache


def cache_stage(ctx: DemoContext) -> dict[str, Any]:
    """The transformer loop's own first-use step (``prepare_caches``), run ahead so it is timed on its own;
    the loop then finds the caches complete. One process, no process group: its collectives are no-ops."""
    from videogen.token_cache.format import read_index
    from videogen.transformer_training.data import cache_paths, prepare_caches, require_tokenizer
    from videogen.transformer_training.training_config import load_training_config

    cfg = load_training_config(ctx.cfg.transformer.path(), ctx.overrides(TRANSFORMER))
    train, val = cache_paths(cfg, ctx.run_dir(TRANSFORMER))
    prepare_caches(cfg, require_tokenizer(cfg.tokenizer), train, val)
    info = {}
    for name, cache in (("train", train), ("val", val)):
        if cache is not None:
            index = read_index(cache)
            info[name] = {"path": str(cache), "items": index["num_items"], "grid": index["grid_shape"]}
    ctx.log(
        f"[demo] cache: {info['train']['items']} training items of {'x'.join(map(str, info['train']['grid']))} "
        "tokens" + (f", {info['val']['items']} held-out" if "val" in info else "")
    )
    return info


def cache_ready(ctx: DemoContext) -> bool:
    info = ctx.state.stage("cache")
    return all((Path(v["path"]) / "index.json").is_file() for k, v in info.items() if k in ("train", "val"))


# ----------------------------------------------------------------------------- 5. showcase


def load_pipeline(ctx: DemoContext):
    from videogen.pipeline import VideoGenPipeline

    return VideoGenPipeline.from_pretrained(ctx.export(TOKENIZER), ctx.export(TRANSFORMER), log=ctx.log)


def showcase_stage(ctx: DemoContext) -> dict[str, Any]:
    """Every use on the first held-out clip, one image and one clip per class, then every use on the next
    held-out clips (up to ``showcase.num_clips``) while the budget leaves room for the evaluation."""
    import time

    from videogen.data.manifest import read_manifest
    from videogen.inference.showcase import run_showcase
    from videogen.video_io import read_video

    pipe = load_pipeline(ctx)
    show = ctx.cfg.showcase
    manifest = read_manifest(ctx.val_manifest)
    info: dict[str, Any] = {"clips": [], "num_frames": pipe.num_frames, "frame_size": list(pipe.frame_size)}
    for i in range(min(show.num_clips, len(manifest))):
        started = time.time()
        fps = float(manifest.fps[i]) or None
        frames = read_video(manifest.paths[i])
        # one window at the model's rate is all the showcase uses: (T, H, W, 3) -> (T', H, W, 3)
        keep = math.ceil(pipe.num_frames * fps / pipe.fps) if fps and pipe.fps else pipe.num_frames
        folder = ctx.out / "showcase" / f"clip_{i:02d}"
        paths = run_showcase(
            pipe, frames[:keep], folder, fps=fps, seed=show.seed + i, **given_steps(show.steps)
        )
        info["clips"].append(
            {
                "source": str(manifest.paths[i]),
                "label": int(manifest.labels[i]),
                "seed": show.seed + i,
                "files": {name: str(p.relative_to(ctx.out)) for name, p in paths.items()},
            }
        )
        if i == 0 and pipe.num_classes > 0 and show.generate == "per_class":
            folder = ctx.out / "showcase"
            info["classes"] = class_samples(pipe, folder, show.steps, show.seed, pipe.fps or fps, ctx.out)
        if ctx.clock.left_until(ctx.cfg.budget.showcase_end) < time.time() - started:
            break  # the rest of the budget is the evaluation's
    return info


def given_steps(steps: int | None) -> dict[str, int]:
    """``{"steps": steps}`` when the demo config sets them, else nothing (the export's defaults)."""
    return {} if steps is None else {"steps": steps}


def class_samples(
    pipe, folder: Path, steps: int | None, seed: int, fps: float | None, out: Path
) -> dict[str, str]:
    """One generated image (``classes.png``) and one generated clip (``classes.gif``) per class, left to right."""
    from videogen.inference.output import write_output
    from videogen.video_io import side_by_side, to_uint8_frames

    options = pipe.sampling_options(seed=seed, **given_steps(steps))
    ids = torch.arange(pipe.num_classes, device=pipe.device)
    images = to_uint8_frames(pipe.engine.generate(len(ids), 1, ids, options))  # (N, 1, H, W, 3)
    clips = to_uint8_frames(pipe.engine.generate(len(ids), pipe.num_frames, ids, options))  # (N, T, H, W, 3)
    png = write_output(folder / "classes.png", side_by_side(list(images)))
    gif = write_output(folder / "classes.gif", side_by_side(list(clips)), fps)
    return {"image": str(png.relative_to(out)), "video": str(gif.relative_to(out))}


def showcase_ready(ctx: DemoContext) -> bool:
    info = ctx.state.stage("showcase")
    files = [f for clip in info.get("clips", []) for f in clip["files"].values()]
    files += list(info.get("classes", {}).values())
    return bool(files) and all((ctx.out / f).is_file() for f in files)


# ----------------------------------------------------------------------------- 6. evaluation


def evaluate_stage(ctx: DemoContext) -> dict[str, Any]:
    """Frame prediction on the held-out clips, ``batch_size`` clips at a time until the budget ends (at least
    one batch, at most ``evaluation.num_clips``); the chunks' means are merged, weighted by their clips."""
    import time

    import numpy as np

    from videogen.atomic import write_json
    from videogen.data.manifest import read_manifest
    from videogen.evaluation.evaluate_prediction import evaluate_frame_prediction, format_prediction_table

    pipe = load_pipeline(ctx)
    ev = ctx.cfg.evaluation
    manifest = read_manifest(ctx.val_manifest)
    total = len(manifest) if ev.num_clips is None else min(ev.num_clips, len(manifest))
    parts: list[dict] = []
    for start in range(0, total, ev.batch_size):
        started = time.time()
        chunk = manifest.select(np.arange(start, min(start + ev.batch_size, total)))
        options = pipe.sampling_options(conditioned=True, seed=ev.seed + start, **given_steps(ev.steps))
        parts.append(
            evaluate_frame_prediction(pipe.engine, chunk, batch_size=ev.batch_size, options=options)[
                "frame_prediction"
            ]
        )
        if start + ev.batch_size < total and ctx.clock.left_until(1.0) < 1.2 * (time.time() - started):
            ctx.log(
                f"[demo] evaluate: the budget ends: {start + ev.batch_size} of {total} held-out clips scored"
            )
            break
    result = {"frame_prediction": merge_means(parts)}
    result["frame_prediction"]["data"] = str(ctx.val_manifest)
    write_json(ctx.out / "frame_prediction.json", result, indent=2)
    ctx.log(format_prediction_table(result))
    return {"file": "frame_prediction.json", "num_clips": result["frame_prediction"]["num_clips"]}


def merge_means(parts: list[dict]) -> dict:
    """Results of :func:`evaluate_frame_prediction` on disjoint clips -> one: every float (and list of floats)
    is a mean over clips, so it is averaged weighted by ``num_clips``; everything else is the first part's."""
    weights = [part["num_clips"] for part in parts]
    merged = dict(parts[0], num_clips=sum(weights))
    for key, value in parts[0].items():
        if isinstance(value, float):
            merged[key] = sum(w * p[key] for w, p in zip(weights, parts)) / sum(weights)
        elif isinstance(value, list) and value and all(isinstance(v, float) for v in value):
            merged[key] = [
                sum(w * p[key][i] for w, p in zip(weights, parts)) / sum(weights) for i in range(len(value))
            ]
    return merged


def evaluate_ready(ctx: DemoContext) -> bool:
    return (ctx.out / "frame_prediction.json").is_file()


STAGES: dict[str, tuple[str, Callable[[DemoContext], dict], Callable[[DemoContext], bool]]] = {
    "data": ("sample data (made if missing)", data_stage, data_ready),
    "tokenizer": ("train + export the video tokenizer", tokenizer_stage, tokenizer_ready),
    "cache": ("tokenize the clips once (token cache)", cache_stage, cache_ready),
    "transformer": ("train + export the COMMIT transformer", transformer_stage, transformer_ready),
    "showcase": ("predict, interpolate, inpaint, outpaint, generate", showcase_stage, showcase_ready),
    "evaluate": ("frame prediction vs baselines on held-out clips", evaluate_stage, evaluate_ready),
}
"""name -> (what it does, the stage, whether its outputs are there for reuse)."""
