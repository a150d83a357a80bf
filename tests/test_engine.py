"""DeepSpeed engine setup: config dict, LR schedule, EMA, data sharding, export, and an exact ZeRO-2 resume."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from videogen.config_loader import from_dict
from videogen.errors import UserError
from videogen.training import (
    EMA,
    CheckpointManager,
    MetricsLogger,
    TrainConfig,
    apply_activation_checkpointing,
    build_deepspeed_config,
    create_engine,
    export_model,
    export_pretrained,
    load_export,
    lr_multiplier,
    video_grid,
)
from videogen.training.config import ScheduleConfig

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from toy import ToyDataset, ToyModel, single_process  # noqa: E402

dist = pytest.fixture(scope="module")(single_process)


def toy_config(**overrides) -> TrainConfig:
    data = {
        "max_steps": 10,
        "engine": {"zero_stage": 2, "micro_batch_size": 4},
        "optimizer": {"lr": 1e-2, "weight_decay": 0.1},
        "schedule": {"warmup_steps": 2},
    }
    data.update(overrides)
    return from_dict(TrainConfig, data)


# ----------------------------------------------------------------------------- config and schedule


def test_deepspeed_config_is_generated_without_auto_and_uses_torch_adam_on_cpu(tmp_path):
    cfg = toy_config()
    ds = build_deepspeed_config(cfg, device="cpu")
    assert "auto" not in json.dumps(ds)
    assert ds["optimizer"] == {
        "type": "AdamW",
        "params": {"lr": 1e-2, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.1, "torch_adam": True},
    }
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"] == {"enabled": False}  # auto -> fp32 on CPU
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 1
    assert ds["gradient_clipping"] == 1.0

    bf16 = build_deepspeed_config(toy_config(engine={"precision": "bf16", "zero_stage": 0}), device="cpu")
    assert bf16["bf16"] == {"enabled": True} and bf16["zero_optimization"] == {"stage": 0}
    adam = build_deepspeed_config(toy_config(optimizer={"name": "adam", "betas": [0.5, 0.9]}), device="cpu")
    assert adam["optimizer"]["type"] == "Adam" and adam["optimizer"]["params"]["adam_w_mode"] is False

    overrides = tmp_path / "ds.json"
    overrides.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 1000}}))
    merged = build_deepspeed_config(toy_config(engine={"deepspeed_overrides": str(overrides)}), device="cpu")
    assert (
        merged["zero_optimization"]["reduce_bucket_size"] == 1000
        and merged["zero_optimization"]["stage"] == 2
    )
    overrides.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto"}))
    with pytest.raises(UserError, match="train_micro_batch_size_per_gpu"):
        build_deepspeed_config(toy_config(engine={"deepspeed_overrides": str(overrides)}), device="cpu")


def test_config_rejects_zero3_and_unknown_precision():
    with pytest.raises(UserError, match="engine.zero_stage. = 3"):
        toy_config(engine={"zero_stage": 3})
    with pytest.raises(UserError, match="precision"):
        toy_config(engine={"precision": "fp16"})


def test_lr_schedule_warmup_then_cosine_to_floor():
    f = lr_multiplier(ScheduleConfig(kind="cosine", warmup_steps=4, min_lr_ratio=0.1), max_steps=104)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(54) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert f(104) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    values = [f(s) for s in range(4, 105)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    linear = lr_multiplier(ScheduleConfig(kind="linear", warmup_steps=0, min_lr_ratio=0.0), max_steps=10)
    assert linear(5) == pytest.approx(0.5)


def test_lr_cooldown_falls_linearly_to_the_floor_over_the_last_steps():
    """Warmup-stable-decay: constant after warmup, then the last cooldown_steps fall linearly to the floor;
    on a cosine schedule the cooldown starts from the cosine's value there."""
    wsd = lr_multiplier(
        ScheduleConfig(kind="constant", warmup_steps=10, min_lr_ratio=0.01, cooldown_steps=100),
        max_steps=1000,
    )
    assert wsd(9) == pytest.approx(1.0) and wsd(899) == pytest.approx(1.0) and wsd(900) == pytest.approx(1.0)
    assert wsd(950) == pytest.approx(0.505)  # half way down
    assert wsd(1000) == pytest.approx(0.01) and wsd(2000) == pytest.approx(0.01)
    tail = [wsd(s) for s in range(900, 1001)]
    assert all(a > b for a, b in zip(tail, tail[1:]))
    cosine = ScheduleConfig(kind="cosine", warmup_steps=0, min_lr_ratio=0.0, cooldown_steps=50)
    plain = lr_multiplier(ScheduleConfig(kind="cosine", warmup_steps=0, min_lr_ratio=0.0), max_steps=100)
    cooled = lr_multiplier(cosine, max_steps=100)
    assert [cooled(s) for s in range(51)] == [plain(s) for s in range(51)]
    assert cooled(75) == pytest.approx(plain(50) / 2)
    assert lr_multiplier(ScheduleConfig(kind="constant"), max_steps=10)(9) == 1.0  # no cooldown by default


# ----------------------------------------------------------------------------- EMA, data, export, logging


def test_ema_is_fp32_average_and_swaps_weights_back():
    model = nn.Linear(2, 2).to(torch.bfloat16)
    ema = EMA(model, decay=0.75)
    assert all(t.dtype == torch.float32 for t in ema.state_dict().values())
    start = model.weight.detach().float().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    expected = 0.75 * start + 0.25 * model.weight.detach().float()
    assert torch.allclose(ema.averaged["weight"], expected)
    current = model.weight.detach().clone()
    with ema.swapped_into(model):
        assert torch.equal(model.weight, expected.to(torch.bfloat16))
    assert torch.equal(model.weight, current)


def test_export_round_trip_and_kind_check(tmp_path):
    model = ToyModel()
    export_model(model.state_dict(), toy_config(), "toy", tmp_path / "export")
    config, weights = load_export(tmp_path / "export", kind="toy")
    assert config["max_steps"] == 10 and "kind" not in config
    fresh = ToyModel()
    fresh.load_state_dict(weights)
    x = torch.randn(3, 8)
    assert torch.equal(fresh(x), model(x))
    with pytest.raises(UserError, match="not a 'tokenizer'"):
        load_export(tmp_path / "export", kind="tokenizer")

    class Pretrained(ToyModel):  # a model that writes its own export (as VideoTokenizer does)
        def save_pretrained(self, directory):
            export_model(self.state_dict(), {"hidden": 16}, "pretrained-toy", directory)

    ema_weights = {k: v + 1 for k, v in model.state_dict().items()}
    export_pretrained(Pretrained, ema_weights, tmp_path / "pretrained")
    config, weights = load_export(tmp_path / "pretrained", kind="pretrained-toy")
    assert config == {"hidden": 16} and all(torch.equal(weights[k], ema_weights[k]) for k in weights)


def test_metrics_logger_writes_jsonl_tensorboard_and_video_grid(tmp_path):
    grid = video_grid(torch.zeros(2, 3, 5, 8, 6))
    assert grid.shape == (16, 30, 3) and grid.dtype == torch.uint8 and int(grid[0, 0, 0]) == 128
    logger = MetricsLogger(tmp_path, enabled=True, tensorboard=True, progress_bar=False)
    logger.scalars(3, {"loss": 0.5})
    logger.video(3, "recon", torch.rand(2, 3, 5, 8, 8) * 2 - 1)
    logger.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["loss"] == 0.5
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_activation_checkpointing_keeps_gradients():
    class Blocks(nn.Module):
        checkpoint_block_types = (nn.Linear,)

        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    plain, ckpt = Blocks(), Blocks()
    ckpt.load_state_dict(plain.state_dict())
    assert apply_activation_checkpointing(ckpt, "blocks") == 2
    x = torch.randn(5, 4)
    plain(x).sum().backward()
    ckpt(x).sum().backward()
    assert torch.allclose(plain.a.weight.grad, ckpt.a.weight.grad)
    assert list(ckpt.state_dict()) == list(plain.state_dict())
    with pytest.raises(UserError, match="checkpoint_block_types"):
        apply_activation_checkpointing(ToyModel(), "blocks")


# ----------------------------------------------------------------------------- DeepSpeed ZeRO-2


def test_single_process_fills_launcher_environment(dist):
    assert dist.world_size == 1 and dist.rank == 0 and dist.backend == "gloo"
    assert os.environ["WORLD_SIZE"] == "1" and os.environ["MASTER_PORT"].isdigit()


def _optimizer_tensors(engine) -> list[torch.Tensor]:
    state = engine.optimizer.optimizer.state  # the torch AdamW inside ZeRO (fp32 partitions)
    tensors = []
    for group in engine.optimizer.optimizer.param_groups:
        for p in group["params"]:
            tensors += [p.detach().clone()] + [state[p][k].clone() for k in ("exp_avg", "exp_avg_sq")]
    return tensors


def _step(engine, batch):
    loss = (engine(batch["x"]) - batch["y"]).pow(2).mean()
    engine.backward(loss)
    engine.step()


def test_zero2_two_steps_save_and_exact_resume_in_a_fresh_engine(dist, tmp_path):
    cfg = toy_config()
    torch.manual_seed(0)
    engine = create_engine(ToyModel(), cfg, dist)
    ema = EMA(engine.module, 0.9)
    data = ToyDataset(16)
    batches = [{"x": data.x[i * 4 : i * 4 + 4], "y": data.y[i * 4 : i * 4 + 4]} for i in range(3)]
    for batch in batches[:2]:
        _step(engine, batch)
        ema.update(engine.module)
    assert engine.global_steps == 2
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2, dist=dist)
    path = manager.save(2, {"model": engine}, {"model": ema}, {"step": 2, "states": {"x": {"n": 1}}})
    after_save_rand = torch.rand(3)

    torch.manual_seed(123)  # the fresh engine starts from other weights
    fresh = create_engine(ToyModel(), cfg, dist)
    fresh_ema = EMA(fresh.module, 0.9)
    assert not torch.equal(fresh.module.net[0].weight, engine.module.net[0].weight)
    client = manager.load(manager.resolve("auto"), {"model": fresh}, {"model": fresh_ema})
    assert client["step"] == 2 and client["states"] == {"x": {"n": 1}} and manager.resolve("auto") == path
    assert torch.equal(torch.rand(3), after_save_rand)  # RNG restored
    assert fresh.global_steps == 2
    assert (
        fresh.lr_scheduler.state_dict()["last_epoch"] == engine.lr_scheduler.state_dict()["last_epoch"] == 2
    )
    for a, b in zip(engine.module.parameters(), fresh.module.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(_optimizer_tensors(engine), _optimizer_tensors(fresh)):
        assert torch.equal(a, b)
    for name, value in ema.state_dict().items():
        assert torch.equal(value, fresh_ema.state_dict()[name])
    _step(engine, batches[2])
    _step(fresh, batches[2])
    assert engine.get_lr() == fresh.get_lr() and engine.get_lr()[0] < 1e-2 * (1 - 1e-6)
    for a, b in zip(engine.module.parameters(), fresh.module.parameters()):
        assert torch.equal(a, b)  # same optimizer state and schedule -> the same next update
    engine.destroy()
    fresh.destroy()
