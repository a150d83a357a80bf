"""Two-engine GAN steps (toy generator + PatchGAN) under several ZeRO stages / precisions, on N ranks.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/scripts/gan_ddp.py OUT_JSON RUN_ROOT

For each setting: 3 optimizer steps through ``Trainer.fit`` with the generator's adversarial term
computed through ``functional_call`` on detached discriminator weights, hinge + LeCam + R1 for D.
Rank 0 writes, per setting: the largest parameter difference between ranks (and how far the weights
moved), the sample indices each rank saw per step, the LeCam EMAs of every rank, and the losses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import Dataset

from videogen.config_loader import from_dict
from videogen.data.loader import EpochDataLoader
from videogen.data.samplers import ResumableSampler
from videogen.tokenizer.discriminator import DiscriminatorConfig, build_discriminator
from videogen.tokenizer.losses import (
    LeCam,
    discriminator_logits_detached,
    discriminator_loss,
    generator_loss,
    r1_penalty,
    reconstruction_loss,
)
from videogen.training import OptimizerConfig, RunConfig, TrainConfig, Trainer, distributed_session

SETTINGS = [(2, "fp32"), (2, "bf16"), (1, "bf16"), (0, "bf16")]
STEPS = 3
BATCH = 2


class Clips(Dataset):
    """Sample ``i``: ``{"index": i, "video": (3, 5, 16, 16)}`` in [-1, 1], fixed by ``i``."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        return {"index": torch.tensor(index), "video": torch.rand(3, 5, 16, 16, generator=generator) * 2 - 1}

    def set_epoch(self, epoch: int) -> None:
        pass


class ToyGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv3d(8, 3, 3, padding=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(video))


def flat_params(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in module.parameters()])


def run_setting(dist, zero_stage: int, precision: str, root: str) -> dict:
    cfg = from_dict(
        TrainConfig,
        {
            "max_steps": STEPS,
            "engine": {"zero_stage": zero_stage, "precision": precision, "micro_batch_size": BATCH},
            "optimizer": {"lr": 1e-3},
            "checkpoint": {"every_steps": STEPS, "resume": "never"},
            "log": {"every_steps": 1, "tensorboard": False, "progress_bar": False},
        },
    )
    run = RunConfig(name=f"gan-z{zero_stage}-{precision}", root=root)
    seen: list[list[int]] = []
    losses: list[dict[str, float]] = []
    with Trainer(cfg, run, dist) as trainer:
        gen = trainer.add_engine("generator", ToyGenerator(), ema=True)
        disc_cfg = DiscriminatorConfig(base_channels=8, norm="batch")
        dis = trainer.add_engine(
            "discriminator",
            build_discriminator(disc_cfg),
            optimizer=OptimizerConfig(lr=1e-3, betas=(0.5, 0.9)),
        )
        initial = {name: flat_params(engine.module) for name, engine in trainer.engines.items()}
        lecam = trainer.register("lecam", LeCam(0.9).to(dist.device))
        sampler = trainer.register(
            "data", ResumableSampler(len(Clips()), BATCH, seed=3, rank=dist.rank, world_size=dist.world_size)
        )

        def train_step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            seen.append(batch["index"].tolist())
            real = trainer.to_device(batch["video"])
            fake = gen(real)
            g_adv = generator_loss(discriminator_logits_detached(dis.module, fake))
            g_loss = reconstruction_loss(fake, real) + 0.1 * g_adv
            if trainer.finite(generator=g_loss):
                gen.backward(g_loss)
                gen.step()
            real_in = real.detach().requires_grad_(True)
            real_logits = dis.module(
                real_in
            )  # not dis(...): its output hooks would start ZeRO's reduction in r1
            fake_logits = dis(fake.detach())
            d_loss = (
                discriminator_loss(real_logits, fake_logits)
                + 0.05 * lecam(real_logits, fake_logits)
                + 0.1 * r1_penalty(real_logits, real_in)
            )
            if trainer.finite(discriminator=d_loss):
                dis.backward(d_loss)
                dis.step()
            metrics = {"g_loss": g_loss.detach(), "d_loss": d_loss.detach()}
            losses.append({k: float(v) for k, v in metrics.items()})
            return metrics

        trainer.fit(EpochDataLoader(Clips(), batch_sampler=sampler), train_step)
        params = {name: flat_params(engine.module) for name, engine in trainer.engines.items()}
        ema = torch.cat([t.float().flatten() for t in trainer.emas["generator"].state_dict().values()])
        result = {"steps": trainer.step, "losses": losses, "nonfinite": trainer.guard.total}
        for name, vector in {**params, "ema": ema}.items():
            gathered = [torch.zeros_like(vector) for _ in range(dist.world_size)]
            torch_dist.all_gather(gathered, vector)
            result[f"max_rank_diff/{name}"] = max(float((g - gathered[0]).abs().max()) for g in gathered)
        for name, vector in params.items():
            result[f"param_change/{name}"] = float((vector - initial[name]).abs().max())
        all_seen: list = [None] * dist.world_size
        torch_dist.all_gather_object(all_seen, seen)
        result["seen"] = all_seen
        lecam_state = [None] * dist.world_size
        torch_dist.all_gather_object(lecam_state, [float(lecam.ema_real), float(lecam.ema_fake)])
        result["lecam"] = lecam_state
        result["checkpoint"] = str(trainer.checkpoints.latest())
    return result


def main() -> int:
    out_json, root = sys.argv[1], sys.argv[2]
    with distributed_session() as dist:
        results = {}
        for zero_stage, precision in SETTINGS:
            results[f"z{zero_stage}-{precision}"] = run_setting(dist, zero_stage, precision, root)
        if dist.is_main:
            results["world_size"] = dist.world_size
            Path(out_json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
