"""``./run.sh train tokenizer``: train the MAGVIT-v2 style tokenizer with DeepSpeed, evaluate it, export it.

``main(config_path, overrides)`` loads :class:`TokenizerTrainingConfig` (``configs/tokenizer/default.yaml``
when no file is given), makes the sample data on first use, and runs on one CPU process or on every
rank a launcher started:

* two DeepSpeed engines: the generator (the tokenizer, with an fp32 EMA) and, when
  ``loss.gan.generator_weight > 0``, the discriminator; LeCam EMAs, the data position and the
  failed-file counts go into checkpoints; ``--resume auto`` continues from the newest one;
* each micro-batch: :class:`~videogen.tokenizer_training.step.TokenizerStep` (reconstruction, LFQ,
  perceptual, GAN);
* every ``train.log.eval_every_steps``: held-out PSNR / SSIM / codebook usage with the EMA weights
  (``metrics.jsonl`` and TensorBoard under ``eval/``) and ``samples/step_XXXXXX.{mp4,gif}``;
* at the end: the final checkpoint, ``export/`` (``config.yaml`` + ``model.safetensors``, EMA
  weights, for ``VideoTokenizer.from_pretrained``), the export evaluated on the held-out split
  (``eval.json``), ``reconstructions.{mp4,gif}`` (input | reconstruction) and a printed summary;
* with ``decoder_finetune.fraction``: the last steps train the decoder alone on whole frames, the tokens
  fixed (:mod:`videogen.tokenizer_training.decoder_finetune`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from videogen.collectives import barrier
from videogen.data.failures import FailureMonitor
from videogen.data.loader import build_loader, prepare_data
from videogen.tokenizer import VideoTokenizer
from videogen.tokenizer.discriminator import build_discriminator
from videogen.tokenizer.inflate import inflate_image_to_video
from videogen.tokenizer.losses import LeCam
from videogen.tokenizer.perceptual import build_perceptual_loss
from videogen.tokenizer_training.decoder_finetune import EncoderFreeze, StagedBatches, generator_param_groups
from videogen.tokenizer_training.evaluation import HeldOutEvaluator, check_eval_data
from videogen.tokenizer_training.step import SHOWN, TokenizerStep
from videogen.tokenizer_training.training_config import TokenizerTrainingConfig, load_training_config
from videogen.training.distributed import DistInfo, distributed_session, run_on_main
from videogen.training.logger import format_duration
from videogen.training.trainer import Trainer


def generator_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    """The generator's EMA weights (fp32), or its current weights when training keeps no EMA."""
    if "generator" in trainer.emas:
        return trainer.emas["generator"].state_dict()
    return {k: v.detach().float() for k, v in trainer.engines["generator"].module.state_dict().items()}


def contiguous_parameters(module: torch.nn.Module) -> torch.nn.Module:
    """Store every parameter contiguously (activations keep the model's memory format).

    DeepSpeed broadcasts each parameter as ``p.data.view(torch.uint8)`` at start, which fails for
    ``channels_last_3d`` weights (last stride != 1); ZeRO-1/2 flatten them into contiguous buffers anyway.
    """
    for param in module.parameters():  # clone, not .contiguous(): that keeps the strides of 1x1x1 kernels
        param.data = param.data.clone(memory_format=torch.contiguous_format)
    return module


def _decoder_input_in_weight_dtype(decoder: torch.nn.Module, args: tuple) -> tuple | None:
    latent, *rest = args
    dtype = decoder.weight_dtype
    return None if latent.dtype == dtype else (latent.to(dtype), *rest)


def cast_decoder_input(model: VideoTokenizer) -> VideoTokenizer:
    """Feed the decoder its weights' dtype: the quantizer always returns fp32 codes, which a bf16
    engine's decoder (its convs and adaptive norms) would reject. Differentiable (straight-through)."""
    model.decoder.register_forward_pre_hook(_decoder_input_in_weight_dtype)
    return model


def build_generator(cfg: TokenizerTrainingConfig, trainer: Trainer) -> VideoTokenizer:
    """The tokenizer to train; inflated from ``init_from_image`` unless a checkpoint will be resumed."""
    model = cast_decoder_input(contiguous_parameters(VideoTokenizer(cfg.model)))
    if not cfg.init_from_image:
        return model
    resume_from = trainer.checkpoints.resolve(cfg.train.checkpoint.resume)
    if resume_from is not None:
        trainer.logger.info(f"init_from_image: not used, resuming from {resume_from}")
        return model
    image = VideoTokenizer.from_pretrained(cfg.init_from_image)
    inflate_image_to_video(image, model)
    trainer.logger.info(f"init_from_image: inflated the image tokenizer {cfg.init_from_image} (last-tap)")
    return model


def summary_text(
    cfg: TokenizerTrainingConfig,
    trainer: Trainer,
    export_dir: Path,
    results: dict[str, dict[str, Any]] | None,
    samples: list[Path],
    timing: dict[str, Any],
) -> str:
    """What the person sees at the end: where everything is and what the held-out split reached."""
    run_dir = trainer.run_dir
    steps = timing["steps"]
    per_step = f", {timing['train_s'] / steps:.2f} s/step" if steps else ""
    lines = [
        f"tokenizer training done: step {trainer.step} ({steps} steps this run in "
        f"{format_duration(timing['train_s'])}{per_step}; wall time {format_duration(timing['wall_s'])})",
        f"  checkpoint       {trainer.checkpoints.latest()}",
        f"  export           {export_dir}  (VideoTokenizer.from_pretrained, EMA weights)",
    ]
    if samples:
        lines.append(f"  reconstructions  {' and '.join(str(p) for p in samples)}  (input | reconstruction)")
    lines.append(
        f"  metrics          {run_dir / 'metrics.jsonl'}, TensorBoard: tensorboard --logdir {run_dir}"
    )
    if results is not None:
        sources = {"val": cfg.data.val, **cfg.eval.sets}
        for name, metrics in results.items():
            code = metrics["codebook"]
            frames = metrics.get("num_frames", cfg.eval.frames(cfg.data.num_frames))
            res = cfg.data.resolution
            lines.append(
                f"  held-out {name} ({metrics['num_clips']} clips of {frames}x{res}x{res}, {sources[name]}): "
                f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, codebook usage "
                f"{code['used_codes']}/{code['codebook_size']} ({100 * code['usage_fraction']:.1f}%), "
                f"perplexity {code['perplexity']:.1f}"
            )
    else:
        lines.append("  held-out evaluation: off (no data.val or eval.final=off)")
    return "\n".join(lines)


def finish(
    cfg: TokenizerTrainingConfig,
    trainer: Trainer,
    evaluator: HeldOutEvaluator | None,
    timing: dict[str, Any],
) -> None:
    """Export (every rank), then on rank 0: evaluate the export, write reconstructions, print the summary."""
    export_dir = trainer.export(
        "generator", trainer.run_dir / "export", build=lambda: VideoTokenizer(cfg.model)
    )
    if not trainer.dist.is_main:
        return
    results, samples = None, []
    if evaluator is not None and cfg.eval.final == "on":
        reuse = evaluator.last is not None and evaluator.last[0] == trainer.step  # same (EMA) weights
        evaluator.use_model(VideoTokenizer.from_pretrained(export_dir, map_location=trainer.device))
        results = evaluator.last[1] if reuse else evaluator.evaluate(trainer.step, progress=True)
        for name in results:
            samples += evaluator.write_samples(trainer.run_dir / "reconstructions", name)[1]
        result = {
            "step": trainer.step,
            "export": str(export_dir),
            "tokenizer": results["val"],
            "sets": {name: m for name, m in results.items() if name != "val"},
        }
        (trainer.run_dir / "eval.json").write_text(json.dumps(result, indent=1) + "\n")
        trainer.logger.scalars(trainer.step, {f"final/{k}": v for k, v in evaluator.scalars(results).items()})
    timing["wall_s"] = time.time() - timing["started"]
    print(summary_text(cfg, trainer, export_dir, results, samples, timing), flush=True)


def train(cfg: TokenizerTrainingConfig, dist: DistInfo, started: float) -> int:
    """The whole run on this rank (every rank calls it). Returns 0 (stopped by a signal included)."""
    gan = cfg.loss.gan
    with Trainer(cfg.train, cfg.run, dist, config=cfg) as trainer:
        info = trainer.logger.info
        model = build_generator(cfg, trainer)
        stage_two = cfg.decoder_finetune
        switch = cfg.train.max_steps - stage_two.steps(
            cfg.train.max_steps
        )  # first step of the decoder fine-tune
        groups, frozen_groups = (
            generator_param_groups(model, cfg.train.optimizer.weight_decay)
            if stage_two.fraction
            else (None, [])
        )
        gen = trainer.add_engine("generator", model, ema=True, param_groups=groups)
        dis = lecam = None
        if gan.enabled:
            dis = trainer.add_engine(
                "discriminator",
                build_discriminator(gan.discriminator),
                optimizer=gan.optimizer,
                schedule=gan.schedule,
            )
            lecam = trainer.register("lecam", LeCam(gan.lecam_decay).to(dist.device))
            info(
                f"GAN: {gan.discriminator.kind} discriminator from step {gan.start_step}, weight {gan.generator_weight}"
            )
        else:
            info("GAN: off (loss.gan.generator_weight=0)")
        perceptual = build_perceptual_loss(cfg.loss.vgg_path, cfg.loss.lpips_path, log=info)
        if perceptual is not None:
            perceptual = perceptual.to(dist.device, trainer.dtype)
        loader, sampler = build_loader(
            cfg.data, "train", cfg.train.engine.micro_batch_size, dist.rank, dist.world_size, cfg.train.seed
        )
        trainer.register("data", sampler)
        batches: Any = loader
        freeze = None
        if stage_two.fraction:
            data_two = dataclasses.replace(
                cfg.data,
                train=stage_two.train or cfg.data.train,
                crop_size=stage_two.crop_size,
                image_batch_size=stage_two.image_batch_size or cfg.data.image_batch_size,
            )
            clips = stage_two.micro_batch_size or cfg.train.engine.micro_batch_size
            loader_two, sampler_two = build_loader(
                data_two, "train", clips, dist.rank, dist.world_size, cfg.train.seed + 1
            )
            trainer.register("data_decoder_finetune", sampler_two)
            batches = StagedBatches(trainer, loader, loader_two, switch)
            freeze = EncoderFreeze(gen, trainer.emas.get("generator"), switch, frozen_groups)
            crop = (
                f"{stage_two.crop_size}x{stage_two.crop_size} crops"
                if stage_two.crop_size
                else "whole frames"
            )
            info(
                f"decoder fine-tune: steps {switch + 1}-{cfg.train.max_steps} train the decoder alone on "
                f"{crop} of {data_two.train}, {clips} clips per step (encoder and quantizer frozen at their EMA weights)"
            )
        monitor = trainer.register(
            "data_failures",
            FailureMonitor(cfg.data.max_failure_fraction, cfg.data.min_samples_before_failure_check),
        )
        first_step = trainer.resume()
        evaluator = HeldOutEvaluator(cfg, dist.device) if cfg.data.val and dist.is_main else None
        step_fn = TokenizerStep(trainer, cfg.loss, gen, dis, lecam, perceptual, monitor, freeze=freeze)

        def evaluate(step: int) -> dict[str, float] | None:
            scalars = None
            if evaluator is not None:
                evaluator.load_weights(generator_weights(trainer))
                results = evaluator.evaluate(step)
                paths = []
                for name in results:
                    pairs, written = evaluator.write_samples(
                        trainer.run_dir / "samples" / f"step_{step:06d}", name
                    )
                    paths += written[:1]
                    if len(pairs):  # input | reconstruction
                        tag = "eval/reconstruction" if name == "val" else f"eval/{name}/reconstruction"
                        trainer.logger.video(step, tag, pairs)
                scalars = evaluator.scalars(results)
                text = ", ".join(
                    f"{name} PSNR {m['psnr']:.2f} dB SSIM {m['ssim']:.4f}" for name, m in results.items()
                )
                info(
                    f"step {step}: held-out {text}, codebook usage {100 * scalars['codebook_usage']:.1f}%"
                    + (f"; samples {', '.join(str(p) for p in paths)}" if paths else "")
                )
            barrier()
            return scalars

        fit_started = time.time()
        trainer.fit(
            batches, step_fn, evaluate=evaluate if cfg.data.val else None, media=step_fn.media, show=SHOWN
        )
        timing = {
            "started": started,
            "steps": trainer.step - first_step,
            "train_s": time.time() - fit_started,
        }
        if trainer.step < cfg.train.max_steps:  # stopped by SIGINT / SIGTERM: the checkpoint is written
            return 0
        if monitor.failed:
            info(
                f"data: {monitor.failed} of {monitor.failed + monitor.seen} files failed to decode and were replaced"
            )
        finish(cfg, trainer, evaluator, timing)
        barrier()
    return 0


def main(config_path: str | None, overrides: list[str]) -> int:
    """``run.sh train tokenizer [--config YAML] [key=value ...]``; bad input raises ``UserError`` (exit 2)."""
    started = time.time()
    cfg = load_training_config(config_path, list(overrides))
    with distributed_session() as dist:
        more = (cfg.decoder_finetune.train, *cfg.eval.sets.values())
        run_on_main(lambda: prepare_data(cfg.data, more=more), "make the sample data")  # made on first use
        check_eval_data(cfg)
        return train(cfg, dist, started)
