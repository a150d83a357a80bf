"""Two CPU processes (gloo) run the two-engine GAN step under ZeRO 0-2, fp32 and bf16."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "gan_ddp.py"
WORLD = 2
BATCH = 2  # per rank, as in the script
STEPS = 3


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gan")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD}",
        str(SCRIPT),
        str(out / "results.json"),
        str(out / "runs"),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads((out / "results.json").read_text())
    assert data.pop("world_size") == WORLD
    return data


@pytest.mark.slow
def test_gan_step_keeps_ranks_identical_under_every_setting(results):
    assert set(results) == {"z2-fp32", "z2-bf16", "z1-bf16", "z0-bf16"}
    for setting, result in results.items():
        assert result["steps"] == STEPS and result["nonfinite"] == 0, setting
        for name in ("generator", "discriminator", "ema"):
            assert result[f"max_rank_diff/{name}"] == 0.0, (setting, name)
        for name in ("generator", "discriminator"):  # both engines trained (so equality is not trivial)
            assert result[f"param_change/{name}"] > 0.0, (setting, name)
        first, second = result["lecam"]
        assert first == second and first != [0.0, 0.0]  # LeCam EMAs agree across ranks


@pytest.mark.slow
def test_the_batch_is_split_across_ranks_not_duplicated(results):
    for setting, result in results.items():
        per_rank = result["seen"]  # [rank][step] -> sample indices
        assert len(per_rank) == WORLD and all(len(steps) == STEPS for steps in per_rank)
        for step in range(STEPS):
            indices = [i for rank in range(WORLD) for i in per_rank[rank][step]]
            assert len(indices) == WORLD * BATCH and len(set(indices)) == WORLD * BATCH, (setting, step)
        seen = [i for rank in per_rank for step in rank for i in step]
        assert len(set(seen)) == len(seen)  # within an epoch nothing repeats


@pytest.mark.slow
def test_two_rank_checkpoint_has_every_ranks_shards(results):
    for setting, result in results.items():
        path = Path(result["checkpoint"])
        assert path.name == f"step_{STEPS:08d}" and (path / "meta.json").is_file(), setting
        meta = json.loads((path / "meta.json").read_text())
        assert meta["world_size"] == WORLD and meta["engines"] == ["discriminator", "generator"]
        assert sorted(p.name for p in (path / "rng").iterdir()) == ["rank_00000.pt", "rank_00001.pt"]
        if not setting.startswith("z0"):  # ZeRO 1-2 partition the optimizer state per rank
            for engine in ("generator", "discriminator"):
                shards = sorted(
                    p.name.split("zero_pp_rank_")[1] for p in (path / engine).glob("*optim_states.pt")
                )
                assert shards == [f"{r}_mp_rank_00_optim_states.pt" for r in range(WORLD)], (setting, shards)
