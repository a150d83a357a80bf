"""The six stages of ``./run.sh demo``, each a function ``stage(ctx) -> info`` (info goes into ``demo.json``).

1. ``data``: the sample data (made if missing); 2. ``tokenizer``: training + export into
``<out>/tokenizer/``; 3. ``cache``: the transformer's token caches of the train and val clips (made the
way the transformer loop makes them on first use); 4. ``transformer``: training + export into
``<out>/transformer/``; 5. ``showcase``: every use on held-out clips, plus one image and one clip per
class; 6. ``evaluate``: frame prediction on held-out clips against the baselines.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videogen.demo.budget import Clock, DemoState
from videogen.demo.config import DemoConfig
from videogen.demo.training import TrainingStage, has_export, run_child, run_training
from videogen.errors import UserError

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
    from videogen.training.tokenizer_config import load_training_config

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
        from videogen.inference.evaluate_tokenizer import evaluate_tokenizer
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
    from videogen.training.transformer_config import load_training_config

    path, overrides = ctx.cfg.transformer.path(), ctx.overrides(TRANSFORMER)
    train = load_training_config(path, overrides).train
    probe_only = ["evaluation.num_items=0", "sampling.num_videos=0"]
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
    """The transformer loop's own first-use step (``prepare_caches``), run ahead (in a child process, like
    the training) so it is timed on its own; the loop then finds the caches complete."""
    from videogen.data.token_shards import read_index
    from videogen.training.transformer_config import load_training_config
    from videogen.training.transformer_data import cache_paths

    config, overrides = ctx.cfg.transformer.path(), ctx.overrides(TRANSFORMER)
    code, _ = run_child(["-c", CACHE_CHILD, str(config), *overrides], ctx.log)
    if code != 0:
        raise UserError(f"making the token cache stopped on the error above (exit code {code})")
    info = {}
    cfg = load_training_config(config, overrides)
    for name, cache in zip(("train", "val"), cache_paths(cfg, ctx.run_dir(TRANSFORMER))):
        if cache is not None:
            index = read_index(cache)
            info[name] = {"path": str(cache), "items": index["num_items"], "grid": index["grid_shape"]}
    ctx.log(
        f"[demo] cache: {info['train']['items']} training items of {'x'.join(map(str, info['train']['grid']))} "
        "tokens" + (f", {info['val']['items']} held-out" if "val" in info else "")
    )
    return info


def make_caches(config: str, overrides: list[str]) -> int:
    """Child process of :func:`cache_stage`: ``prepare_caches`` of a transformer config (exit code 2 on bad input)."""
    from videogen.training.distributed import distributed_session
    from videogen.training.transformer_config import load_training_config
    from videogen.training.transformer_data import cache_paths, prepare_caches, require_tokenizer

    try:
        cfg = load_training_config(config, overrides)
        tokenizer = require_tokenizer(cfg.tokenizer)
        train, val = cache_paths(cfg, Path(cfg.run.root) / cfg.run.name)
        with distributed_session() as dist:
            prepare_caches(cfg, dist, tokenizer, train, val)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


CACHE_CHILD = "import sys; from videogen.demo.stages import make_caches; sys.exit(make_caches(sys.argv[1], sys.argv[2:]))"


def cache_ready(ctx: DemoContext) -> bool:
    info = ctx.state.stage("cache")
    return all((Path(v["path"]) / "index.json").is_file() for k, v in info.items() if k in ("train", "val"))


# ----------------------------------------------------------------------------- 5. showcase


def load_pipeline(ctx: DemoContext):
    from videogen.pipeline import VideoGenPipeline

    return VideoGenPipeline.from_pretrained(ctx.export(TOKENIZER), ctx.export(TRANSFORMER), log=ctx.log)


def showcase_stage(ctx: DemoContext) -> dict[str, Any]:
    from videogen.data.manifest import read_manifest
    from videogen.inference.showcase import run_showcase
    from videogen.video_io import read_video

    pipe = load_pipeline(ctx)
    show = ctx.cfg.showcase
    manifest = read_manifest(ctx.val_manifest)
    clips = []
    for i in range(min(show.num_clips, len(manifest))):
        fps = float(manifest.fps[i]) or None
        frames = read_video(manifest.paths[i])
        # one window at the model's rate is all the showcase uses: (T, H, W, 3) -> (T', H, W, 3)
        keep = math.ceil(pipe.num_frames * fps / pipe.fps) if fps and pipe.fps else pipe.num_frames
        folder = ctx.out / "showcase" / f"clip_{i:02d}"
        paths = run_showcase(pipe, frames[:keep], folder, fps=fps, steps=show.steps, seed=show.seed + i)
        clips.append(
            {
                "source": str(manifest.paths[i]),
                "label": int(manifest.labels[i]),
                "seed": show.seed + i,
                "files": {name: str(p.relative_to(ctx.out)) for name, p in paths.items()},
            }
        )
    info: dict[str, Any] = {
        "clips": clips,
        "num_frames": pipe.num_frames,
        "frame_size": list(pipe.frame_size),
    }
    if pipe.num_classes > 0 and show.generate == "per_class":
        fps = pipe.fps or float(manifest.fps[0]) or None
        info["classes"] = class_samples(pipe, ctx.out / "showcase", show.steps, show.seed, fps, ctx.out)
    return info


def class_samples(pipe, folder: Path, steps: int, seed: int, fps: float | None, out: Path) -> dict[str, str]:
    """One generated image (``classes.png``) and one generated clip (``classes.gif``) per class, left to right."""
    from videogen.inference.output import write_output
    from videogen.inference.sampling import SamplingOptions
    from videogen.video_io import side_by_side, to_uint8_frames

    options = SamplingOptions(seed=seed, steps=steps)
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
    from videogen.inference.evaluate_prediction import evaluate_frame_prediction, format_prediction_table
    from videogen.inference.output import write_json
    from videogen.inference.sampling import SamplingOptions

    pipe = load_pipeline(ctx)
    ev = ctx.cfg.evaluation
    result = evaluate_frame_prediction(
        pipe.engine,
        ctx.val_manifest,
        limit=ev.num_clips,
        batch_size=ev.batch_size,
        options=SamplingOptions(seed=ev.seed, steps=ev.steps),
    )
    write_json(ctx.out / "frame_prediction.json", result)
    ctx.log(format_prediction_table(result))
    return {"file": "frame_prediction.json", "num_clips": result["frame_prediction"]["num_clips"]}


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
