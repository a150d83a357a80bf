"""``./run.sh train tokenizer`` end to end, test-sized: real DeepSpeed engines, real mp4 data and outputs.

One GAN run (joint image + video batches, LeCam, R1, periodic evaluation) is shared by several tests;
resume continues it in a copy. An image tokenizer run feeds ``init_from_image``. Sizes: the ``tiny``
preset narrowed to 16 base channels, 5 frames of 32x32, batch 2, a few steps.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from videogen import cli
from videogen.config_loader import from_dict
from videogen.data.loader import build_loader
from videogen.data.sample_data import SampleParams, make_sample_data
from videogen.tokenizer import TokenizerConfig, VideoTokenizer, image_config
from videogen.tokenizer.inflate import inflate_image_to_video
from videogen.tokenizer.perceptual import VGG16Features
from videogen.tokenizer_training.training_config import (
    DEFAULT_CONFIG,
    TokenizerTrainingConfig,
    load_training_config,
)
from videogen.video_io import read_video

ROOT = Path(__file__).parents[1]
FRAMES, SIZE, BATCH = 5, 32, 2


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    params = SampleParams(
        count=8, val_count=4, test_count=0, image_count=8, size=SIZE, num_frames=9, real=False
    )
    return make_sample_data(tmp_path_factory.mktemp("data") / "sample", params, workers=1)


def overrides(root: Path, sample, name: str, **extra) -> list[str]:
    values = {
        "run.root": str(root),
        "run.name": name,
        "data.train": str(sample.train),
        "data.val": str(sample.val),
        "data.num_frames": FRAMES,
        "data.resolution": SIZE,
        "data.num_workers": 0,
        "model.base_channels": 16,
        "model.num_groups": 8,
        "train.max_steps": 3,
        "train.engine.micro_batch_size": BATCH,
        "data.image_batch_size": BATCH,  # the default's 32 frames would need 32 clips
        "train.log.every_steps": 1,
        "train.log.tensorboard": False,
        "train.log.progress_bar": False,
        "train.checkpoint.every_steps": 0,
        "eval.num_clips": 2,
        "eval.batch_size": 2,
        "eval.num_samples": 2,
        "eval.num_frames": "null",  # the test clips' length
        "eval.sets": "{}",  # no data/sample here
        "loss.gan.generator_weight": 0.0,
        "loss.gan.discriminator.base_channels": 8,
        "decoder_finetune.fraction": 0,  # stage 1 alone, unless a test asks for stage 2
        **extra,
    }
    return [
        f"{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in values.items()
    ]


def train(args: list[str]) -> tuple[int, str, str]:
    """``videogen.cli.main(["train", "tokenizer", *args])`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["train", "tokenizer", *args])
    return code, out.getvalue(), err.getvalue()


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def client_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "client_state.pt", weights_only=True)


GAN = {
    "loss.gan.generator_weight": 0.1,
    "loss.gan.start_step": 0,
    "loss.gan.r1_weight": 1.0,
    "loss.gan.r1_interval": 2,
    "train.log.eval_every_steps": 2,
    "train.log.media_every_steps": 2,
    "train.log.tensorboard": True,
}


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, sample):
    """3 steps with the GAN on from step 0, image batches mixed in, evaluation at step 2 and at the end."""
    root = tmp_path_factory.mktemp("runs")
    # a second held-out set (the same clips under another name: its numbers must equal val's)
    extra = {
        **GAN,
        "data.image_data": str(sample.images),
        "data.image_ratio": 0.4,
        "eval.sets.again": str(sample.val),
        "eval.num_frames": 9,  # trained on 5-frame clips, scored on 9-frame ones
    }
    args = overrides(root, sample, "gan", **extra)
    code, out, err = train(args)
    assert code == 0, err[-3000:]
    return {"dir": root / "gan", "args": args, "stdout": out, "root": root}


@pytest.mark.slow
def test_train_writes_checkpoint_export_samples_and_metrics(gan_run, sample):
    run_dir = gan_run["dir"]
    latest = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest.name == "step_00000003" and (latest / "meta.json").is_file()
    assert json.loads((latest / "meta.json").read_text())["engines"] == ["discriminator", "generator"]
    assert {p.name for p in (run_dir / "export").iterdir()} == {"config.yaml", "model.safetensors"}
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["name"] == "gan"
    # periodic samples (step 2) and final reconstructions: 2 clips stacked, each input | reconstruction
    for stem in (
        run_dir / "samples" / "step_000002",
        run_dir / "samples" / "step_000002_again",
        run_dir / "reconstructions",
        run_dir / "reconstructions_again",
    ):
        frames = read_video(stem.with_suffix(".mp4"))
        assert frames.shape == (9, 2 * SIZE + 2, 2 * SIZE + 2, 3)
        assert read_video(stem.with_suffix(".gif")).shape == frames.shape
    rows = records(run_dir)
    losses = [r for r in rows if "loss/rec" in r]
    assert [r["step"] for r in losses] == [1, 2, 3]
    for name in (
        "loss/g_adv",
        "loss/d",
        "loss/lecam",
        "d/logits_real",
        "d/logits_fake",
        "quantizer/perplexity",
    ):
        assert all(np.isfinite(r[name]) for r in losses), name
    assert any("loss/r1" in r for r in losses)  # every second discriminator step
    assert all("grad_norm/generator" in r and "lr/discriminator" in r for r in losses)
    evals = {r["step"]: r for r in rows if "eval/psnr" in r}
    assert set(evals) == {2} and 0 < evals[2]["eval/codebook_usage"] <= 1
    assert evals[2]["eval/again/psnr"] == evals[2]["eval/psnr"]
    final = json.loads((run_dir / "eval.json").read_text())
    assert final["step"] == 3 and final["tokenizer"]["num_clips"] == 2
    assert final["tokenizer"]["num_frames"] == 9
    assert final["sets"]["again"]["psnr"] == final["tokenizer"]["psnr"]
    assert any("final/psnr" in r for r in rows)
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    summary = gan_run["stdout"]
    assert str(run_dir / "export") in summary and f"PSNR {final['tokenizer']['psnr']:.2f} dB" in summary
    assert "held-out again" in summary
    # joint training: the sampler put image batches among the first 3 steps
    cfg = load_training_config(
        None, gan_run["args"] + [f"data.image_data={sample.images}", "data.image_ratio=0.4"]
    )
    _, sampler = build_loader(cfg.data, "train", BATCH, seed=cfg.train.seed)
    assert sampler.is_image_batch(0)[:3].any() and not sampler.is_image_batch(0)[:3].all()


@pytest.mark.slow
def test_gan_state_is_in_the_checkpoint(gan_run):
    latest = gan_run["dir"] / "checkpoints" / "step_00000003"
    states = client_state(latest)["states"]
    assert set(states) == {"lecam", "data", "data_failures"}
    assert float(states["lecam"]["ema_real"]) != 0.0 and float(states["lecam"]["ema_fake"]) != 0.0
    assert (latest / "discriminator").is_dir() and (latest / "ema_generator.safetensors").is_file()


@pytest.mark.slow
def test_export_gives_the_outputs_of_the_ema_weights(gan_run):
    run_dir = gan_run["dir"]
    exported = VideoTokenizer.from_pretrained(run_dir / "export").eval()
    ema = VideoTokenizer(exported.config).eval()
    ema.load_state_dict(
        load_file(str(run_dir / "checkpoints" / "step_00000003" / "ema_generator.safetensors"))
    )
    video = torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        tokens = exported.tokenize(video)
        assert torch.equal(tokens, ema.tokenize(video))
        assert torch.equal(exported.detokenize(tokens), ema.detokenize(tokens))


@pytest.mark.slow
def test_resume_continues_the_step_count_and_the_data(gan_run, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(gan_run["root"], root)
    args = [a for a in gan_run["args"] if not a.startswith(("run.root=", "train.max_steps="))]
    code, _, err = train(args + [f"run.root={root}", "train.max_steps=5", "train.log.tensorboard=false"])
    assert code == 0, err[-3000:]
    run_dir = root / "gan"
    rows = records(run_dir)
    assert any(r.get("event") == "resumed" and r["step"] == 3 for r in rows)
    assert [r["step"] for r in rows if "loss/rec" in r] == [1, 2, 3, 4, 5]
    before = client_state(run_dir / "checkpoints" / "step_00000003")["states"]
    after = client_state(run_dir / "checkpoints" / "step_00000005")["states"]
    assert before["data"]["position"] + 2 == after["data"]["position"]  # the sampler went on, not from 0
    assert after["data_failures"]["seen"] == before["data_failures"]["seen"] + 2 * BATCH
    assert after["lecam"]["ema_real"] != before["lecam"]["ema_real"]
    assert json.loads((run_dir / "eval.json").read_text())["step"] == 5


def raw_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint / "generator" / "mp_rank_00_model_states.pt", weights_only=False)["module"]


@pytest.mark.slow
def test_decoder_finetune_freezes_the_ema_encoder_and_trains_the_decoder_on_whole_frames(tmp_path, sample):
    """Steps 3-4 of 4 are the decoder fine-tune; then step 4 is trained again, resumed from step 3."""
    args = overrides(
        tmp_path,
        sample,
        "stage2",
        **{
            "data.crop_size": 16,
            "train.max_steps": 4,
            "decoder_finetune.fraction": 0.5,
            "decoder_finetune.micro_batch_size": 1,
            "decoder_finetune.train": str(sample.val),  # stage 2 on clips of its own (4 of them)
            "decoder_finetune.image_batch_size": 2,
            "train.checkpoint.every_steps": 1,
            "train.checkpoint.keep_last": 5,
            "train.ema_decay": 0.5,  # an EMA far from the raw weights after 2 steps
        },
    )
    code, _, err = train(args)
    assert code == 0, err[-3000:]
    run_dir = tmp_path / "stage2"
    log = (run_dir / "log.txt").read_text()
    assert f"steps 3-4 train the decoder alone on whole frames of {sample.val}, 1 clips per step" in log
    checkpoints = run_dir / "checkpoints"
    ema_at_switch = load_file(str(checkpoints / "step_00000002" / "ema_generator.safetensors"))
    raw = {step: raw_weights(checkpoints / f"step_{step:08d}") for step in (2, 3, 4)}
    frozen = [k for k in raw[2] if k.startswith(("encoder.", "quantizer."))]
    decoder = [k for k in raw[2] if k.startswith("decoder.") and k.endswith(".weight")]
    assert frozen and decoder
    assert any(not torch.equal(raw[2][k], ema_at_switch[k]) for k in frozen)  # raw != EMA before the switch

    def assert_stage_two(weights: dict[str, torch.Tensor], previous: dict[str, torch.Tensor]) -> None:
        assert all(torch.equal(weights[k], ema_at_switch[k]) for k in frozen)  # the EMA encoder, frozen
        assert all(not torch.equal(weights[k], previous[k]) for k in decoder)  # the decoder learns

    assert_stage_two(raw[3], raw[2])
    assert_stage_two(raw[4], raw[3])
    export = load_file(str(run_dir / "export" / "model.safetensors"))
    assert all(torch.equal(export[k], ema_at_switch[k]) for k in frozen)
    before = client_state(checkpoints / "step_00000002")["states"]
    after = client_state(checkpoints / "step_00000004")["states"]
    assert after["data"] == before["data"]  # stage 1's data position stays where stage 1 left it
    assert after["data_decoder_finetune"]["position"] == before["data_decoder_finetune"]["position"] + 2

    # resumed inside stage 2 (the checkpoint restores the learning rates): the encoder stays frozen
    shutil.rmtree(checkpoints / "step_00000004")
    (checkpoints / "latest").write_text("step_00000003")
    code, _, err = train(args)
    assert code == 0, err[-3000:]
    assert_stage_two(raw_weights(checkpoints / "step_00000004"), raw[3])


@pytest.mark.slow
def test_image_tokenizer_inflates_into_the_video_run(tmp_path, sample):
    """An image tokenizer run (1-frame batches, image evaluation, a perceptual loss from a local VGG16
    file with random weights), then a video run initialized from its export."""
    vgg = tmp_path / "vgg16.pth"
    torch.save(VGG16Features().state_dict(), vgg)
    image_args = {
        "data.num_frames": 1,
        "data.image_data": str(sample.images),
        "data.image_ratio": 1.0,
        "data.val": str(sample.images),
        "eval.kind": "image",
        "model.temporal_kernel_size": 1,
        "model.temporal_downsample": [False, False],
        "train.max_steps": 2,
        "loss.vgg_path": str(vgg),
    }
    code, _, err = train(overrides(tmp_path, sample, "image", **image_args))
    assert code == 0, err[-3000:]
    image_export = tmp_path / "image" / "export"
    assert json.loads((tmp_path / "image" / "eval.json").read_text())["tokenizer"]["num_frames"] == 1
    assert "perceptual loss: VGG16 features" in (tmp_path / "image" / "log.txt").read_text()
    assert all(r["loss/perceptual"] > 0 for r in records(tmp_path / "image") if "loss/rec" in r)
    # the video run starts from the inflated image weights: with lr 1e-9 one step barely moves them
    video_args = {"init_from_image": str(image_export), "train.max_steps": 1, "train.ema_decay": 0.0}
    args = overrides(tmp_path, sample, "video", **video_args) + ["train.optimizer.lr=0.000000001"]
    code, _, err = train(args)
    assert code == 0, err[-3000:]
    assert "inflated the image tokenizer" in (tmp_path / "video" / "log.txt").read_text()
    trained = VideoTokenizer.from_pretrained(tmp_path / "video" / "export")
    assert trained.config.temporal_kernel_size == 3
    expected = inflate_image_to_video(
        VideoTokenizer.from_pretrained(image_export), VideoTokenizer(trained.config)
    )
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(trained.state_dict()[name], value, rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_a_time_budget_finishes_the_run_early_with_an_export(tmp_path, sample):
    code, out, err = train(
        overrides(tmp_path, sample, "budget", **{"train.max_steps": 50, "train.max_minutes": 1e-4})
    )
    assert code == 0, err[-2000:]
    run_dir = tmp_path / "budget"
    steps = [r["step"] for r in records(run_dir) if "loss/rec" in r]
    assert steps == [1]  # the budget ran out during the first step
    assert (run_dir / "export" / "model.safetensors").is_file() and (run_dir / "eval.json").is_file()
    assert "time budget train.max_minutes=0.0001 reached at step 1" in out + err
    assert "tokenizer training done: step 1" in out


@pytest.mark.parametrize(
    "bad, word",
    [
        ("loss.reconstruction=l3", "loss.reconstruction"),
        ("loss.gan.lecam_wieght=1", "did you mean 'loss.gan.lecam_weight'"),
        ("train.max_steps=many", "train.max_steps"),
        ("model.preset=XXL", "model.preset"),
    ],
)
def test_bad_override_exits_2_with_one_line(bad, word):
    code, _, err = train([bad])
    assert code == 2
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and word in err


@pytest.mark.slow
def test_missing_init_from_image_exits_2(tmp_path, sample):
    code, _, err = train(overrides(tmp_path, sample, "x", init_from_image=str(tmp_path / "nope")))
    assert code == 2 and "nope" in err and "Traceback" not in err


def test_the_default_run_is_its_yaml_over_the_dataclass_defaults():
    cfg = load_training_config(None, [])
    assert cfg == load_training_config(DEFAULT_CONFIG, [])
    assert cfg.run.name == "tokenizer-default" and cfg.data.train == "data/sample/train_mixed.jsonl"
    assert cfg.eval.sets == {"real": "data/sample/real_val.jsonl"} and cfg.eval.num_frames == 17
    assert (
        cfg.model
        == VideoTokenizer.from_preset(
            "tiny", patch_size=4, spatial_downsample=(False, False), conv="factorized", lfq={"bits": 12}
        ).config
    )
    assert cfg.train.optimizer.name == "adam" and cfg.train.optimizer.betas == (0.9, 0.99)


def test_overrides_keep_the_preset_and_the_tokenizer_optimizer_defaults():
    cfg = load_training_config(None, ["model.lfq.entropy_weight=0.2", "train.optimizer.lr=0.002"])
    assert cfg.model.lfq.bits == 12 and cfg.model.lfq.entropy_weight == 0.2  # the YAML's bits stay
    assert cfg.model.lfq.commitment_weight == 0.0  # and tiny's other lfq keys
    assert cfg.train.optimizer.betas == (0.9, 0.99) and cfg.train.optimizer.lr == 0.002  # the YAML's
    assert cfg.loss.gan.optimizer.betas == (0.5, 0.9)  # the dataclass default


def test_real_data_configs_load_and_chain_image_to_video():
    configs = {p.stem: load_training_config(p, []) for p in DEFAULT_CONFIG.parent.glob("*.yaml")}
    assert {"default", "ucf101_128", "k600_128", "imagenet_128"} <= set(configs)
    for name in ("ucf101_128", "k600_128"):
        cfg = configs[name]
        assert cfg.model == from_dict(TokenizerConfig, {"preset": "B"})
        assert (cfg.data.num_frames, cfg.data.resolution) == (17, 128)
        assert cfg.loss.gan.enabled and cfg.train.ema_decay == 0.999 and cfg.train.optimizer.lr == 1e-4
        assert cfg.train.engine.precision == "auto" and cfg.run.name == f"tokenizer-{name.replace('_', '-')}"
    image = configs["imagenet_128"]
    assert image.data.num_frames == 1 and image.data.image_ratio == 1.0 and image.eval.kind == "image"
    assert image.model == image_config(configs["ucf101_128"].model)  # its export inflates into ucf101_128
    assert isinstance(image, TokenizerTrainingConfig)


@pytest.mark.slow
def test_two_processes_run_the_real_loop_in_bf16(tmp_path, sample):
    """``torch.distributed.run`` with 2 CPU ranks (gloo), ZeRO-2, bf16 (the GPU precision; the quantizer's
    fp32 codes must reach the bf16 decoder), GAN with R1, step 2 a decoder fine-tune (the EMA encoder
    copied into ZeRO's fp32 shards): trains, checkpoints per-rank shards, exports."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    extra = {**GAN, "train.max_steps": 2, "train.log.tensorboard": False, "train.engine.precision": "bf16"}
    stage_two = {
        "decoder_finetune.fraction": 0.5,
        "decoder_finetune.image_batch_size": BATCH,
        "train.checkpoint.every_steps": 1,
    }
    args = overrides(tmp_path, sample, "ddp", **extra, **stage_two)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "videogen", "train", "tokenizer", *args]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("tokenizer training done") == 1  # rank 0 reports
    latest = tmp_path / "ddp" / "checkpoints" / "step_00000002"
    assert json.loads((latest / "meta.json").read_text())["world_size"] == 2
    # one optimizer shard per rank (bf16 shards are named bf16_zero_pp_rank_*)
    assert len(list((latest / "generator").glob("*zero_pp_rank_*_optim_states.pt"))) == 2
    assert (tmp_path / "ddp" / "export" / "model.safetensors").is_file()
    assert "decoder fine-tune: steps 2-2" in (tmp_path / "ddp" / "log.txt").read_text()
    ema = load_file(str(tmp_path / "ddp" / "checkpoints" / "step_00000001" / "ema_generator.safetensors"))
    export = load_file(str(tmp_path / "ddp" / "export" / "model.safetensors"))
    frozen = [k for k in ema if k.startswith("encoder.")]
    assert frozen and all(torch.equal(export[k], ema[k].to(torch.bfloat16).float()) for k in frozen)
