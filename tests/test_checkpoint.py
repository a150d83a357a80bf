"""Checkpoints: atomic saves, keep-last-N, resume, SIGTERM / SIGKILL of a training process, non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videogen import atomic
from videogen.config_loader import from_dict
from videogen.errors import UserError
from videogen.training import (
    EMA,
    CheckpointManager,
    RunConfig,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    create_engine,
    load_export,
)

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(SCRIPTS))
from toy import ToyDataset, ToyModel, epoch_loader, single_process  # noqa: E402

dist = pytest.fixture(scope="module")(single_process)


@pytest.fixture(scope="module")
def engine(dist):
    cfg = from_dict(TrainConfig, {"engine": {"zero_stage": 2, "micro_batch_size": 4}})
    engine = create_engine(ToyModel(), cfg, dist)
    yield engine
    engine.destroy()


def checkpoint_steps(root: Path) -> list[int]:
    return [int(p.name.split("_")[1]) for p in sorted(root.glob("step_*"))]


# ----------------------------------------------------------------------------- the manager


def test_crash_during_save_leaves_latest_on_the_previous_checkpoint(dist, engine, tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep_last=0, dist=dist)
    ema = EMA(engine.module, 0.9)
    first = manager.save(1, {"model": engine}, {"model": ema}, {"step": 1})
    assert (tmp_path / "latest").read_text().strip() == first.name

    def crash(self, path):
        raise OSError("disk full (injected)")

    with monkeypatch.context() as patch:
        patch.setattr(EMA, "save", crash)
        with pytest.raises(OSError, match="injected"):
            manager.save(2, {"model": engine}, {"model": ema}, {"step": 2})
    assert (tmp_path / ".tmp-step_00000002" / "model").is_dir()  # half written ...
    assert not (tmp_path / "step_00000002").exists()  # ... never renamed
    assert (tmp_path / "latest").read_text().strip() == first.name
    assert manager.resolve("auto") == first
    (tmp_path / "step_00000009").mkdir()  # an incomplete folder (no meta.json) is never picked
    assert manager.resolve("auto") == first and manager.complete() == [(1, first)]
    with pytest.raises(UserError, match="not a complete videogen checkpoint"):
        manager.resolve(str(tmp_path / "step_00000009"))

    second = manager.save(2, {"model": engine}, {"model": ema}, {"step": 2})
    assert manager.resolve("auto") == second and not list(tmp_path.glob(".tmp-*"))
    assert manager.resolve(str(first)) == first and manager.resolve("never") is None


def test_keep_last_n_deletes_only_older_complete_checkpoints(dist, engine, tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2, dist=dist)
    for step in (2, 4, 6, 8):
        manager.save(step, {"model": engine}, {}, {"step": step})
    assert checkpoint_steps(tmp_path) == [6, 8]
    assert (tmp_path / "latest").read_text().strip() == "step_00000008"


def test_non_finite_weights_are_never_checkpointed(dist, engine, tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=0, dist=dist)
    manager.save(1, {"model": engine}, {}, {"step": 1})
    weight = engine.module.net[0].weight
    saved = weight.detach().clone()
    with torch.no_grad():
        weight[0, 0] = float("nan")
    try:
        with pytest.raises(TrainingDivergedError, match="not finite"):
            manager.save(2, {"model": engine}, {}, {"step": 2})
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert checkpoint_steps(tmp_path) == [1] and manager.resolve("auto").name == "step_00000001"


# ----------------------------------------------------------------------------- non-finite losses in the loop


def run_toy(
    dist,
    root: Path,
    max_steps: int,
    nan_at: int = -1,
    nan_count: int = 0,
    inf_grad_at: int = -1,
    samples: int = 20,
) -> dict:
    """Train the toy model in this process (resume=auto) and export it; returns its final state.

    ``nan_at``: the loss is inf for ``nan_count`` micro-steps at that step; ``inf_grad_at``: the loss
    is finite but its gradient is inf once at that step (DeepSpeed then skips the update).
    """
    cfg = from_dict(
        TrainConfig,
        {
            "max_steps": max_steps,
            "max_nonfinite_steps": 3,
            "ema_decay": 0.9,
            "engine": {"micro_batch_size": 4},
            "optimizer": {"lr": 1e-2},
            "schedule": {"warmup_steps": 2, "decay_steps": 6},  # one curve whatever max_steps is
            "checkpoint": {"every_steps": 2},
            "log": {"every_steps": 1, "tensorboard": False, "progress_bar": False},
        },
    )
    left = [nan_count]
    with Trainer(cfg, RunConfig(name="toy", root=str(root)), dist) as trainer:
        engine = trainer.add_engine("model", ToyModel(), ema=True)
        loader, sampler = epoch_loader(ToyDataset(samples), 4)
        trainer.register("data", sampler)

        def train_step(batch):
            batch = trainer.to_device(batch)
            loss = (engine(batch["x"]) - batch["y"]).pow(2).mean()
            if trainer.step == nan_at and left[0] > 0:
                left[0] -= 1
                loss = loss * float("inf")
            if trainer.step == inf_grad_at and engine.skipped_steps == 0:
                loss.register_hook(lambda grad: grad * float("inf"))
            if trainer.finite(loss=loss):
                engine.backward(loss)
                engine.step()
            return {"loss": loss}

        trainer.fit(loader, train_step)
        trainer.export("model", root / "export", config=cfg, kind="toy")
        return {
            "step": trainer.step,
            "nonfinite": trainer.guard.total,
            "params": [p.detach().clone() for p in engine.module.parameters()],
            "optimizer": [t.clone() for s in engine.optimizer.optimizer.state.values() for t in s.values()],
            "ema": {k: v.clone() for k, v in trainer.emas["model"].state_dict().items()},
            "data": sampler.state_dict(),
            "lr": engine.get_lr(),
        }


def test_stop_and_resume_equals_an_uninterrupted_run(dist, tmp_path):
    straight = run_toy(dist, tmp_path / "straight", max_steps=9)
    run_toy(dist, tmp_path / "split", max_steps=4)  # stops at 4 (checkpoint), as after a signal
    resumed = run_toy(dist, tmp_path / "split", max_steps=9)
    assert resumed["step"] == straight["step"] == 9 and resumed["data"] == straight["data"]
    assert straight["data"]["epoch"] == 1  # the data order crossed an epoch during the run
    assert resumed["lr"] == straight["lr"]
    for key in ("params", "optimizer"):
        assert all(torch.equal(a, b) for a, b in zip(resumed[key], straight[key]))
    assert all(torch.equal(resumed["ema"][k], straight["ema"][k]) for k in straight["ema"])
    config, weights = load_export(tmp_path / "split" / "export", kind="toy")  # the EMA weights
    assert config["max_steps"] == 9 and all(torch.equal(weights[k], resumed["ema"][k]) for k in weights)


def test_non_finite_gradients_skipped_by_deepspeed_are_counted(dist, tmp_path):
    result = run_toy(dist, tmp_path, max_steps=4, inf_grad_at=2)
    assert result["step"] == 4 and result["nonfinite"] == 1
    assert all(torch.isfinite(p).all() for p in result["params"])


def test_data_without_a_full_batch_is_a_clear_error(dist, tmp_path):
    with pytest.raises(UserError, match="no batches"):
        run_toy(dist, tmp_path, max_steps=2, samples=3)


def test_a_non_finite_loss_is_skipped_and_counted(dist, tmp_path):
    result = run_toy(dist, tmp_path, max_steps=5, nan_at=3, nan_count=2)
    assert result["step"] == 5 and result["nonfinite"] == 2
    records = [json.loads(line) for line in (tmp_path / "toy" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [1, 2, 3, 4, 5]  # skipped micro-steps do not advance the step
    assert losses[-1]["nonfinite_steps"] == 2.0
    assert all(v == v and abs(v) != float("inf") for r in losses for v in r.values())  # no nan/inf logged


def test_non_finite_losses_in_a_row_stop_without_a_non_finite_checkpoint(dist, tmp_path):
    with pytest.raises(
        TrainingDivergedError, match=r"non-finite values \(loss\) for 3 steps in a row"
    ) as info:
        run_toy(dist, tmp_path, max_steps=8, nan_at=3, nan_count=100)
    assert "step_00000002" in str(info.value)  # names the newest good checkpoint
    root = tmp_path / "toy" / "checkpoints"
    assert checkpoint_steps(root) == [2]
    for path in root.glob("step_*/ema_model.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(str(path)).values())
    states = torch.load(root / "step_00000002" / "model" / "mp_rank_00_model_states.pt", weights_only=False)
    assert all(torch.isfinite(t).all() for t in states["module"].values())


# ----------------------------------------------------------------------------- signals (subprocesses)


def toy_process(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, str(SCRIPTS / "toy_train.py"), "--root", str(root), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"training exited early ({process.returncode}): {process.communicate()[1][-2000:]}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.05)


def logged_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if '"loss"' in line]


def result_of(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_zero(tmp_path):
    process = toy_process(tmp_path, "--max-steps", "500", "--every", "1000", "--sleep", "0.05")
    run = tmp_path / "toy"
    wait_for(lambda: len(logged_steps(run)) >= 3, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    step = result_of(stdout)["step"]
    assert 3 <= step < 500
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step_{step:08d}"
    assert "received SIGTERM" in stderr and "continue with train.checkpoint.resume=auto" in stderr


@pytest.mark.slow
def test_sigkill_mid_run_resumes_from_the_last_complete_checkpoint(tmp_path):
    killed = tmp_path / "killed"
    process = toy_process(killed, "--max-steps", "500", "--every", "2", "--sleep", "0.05")
    latest = killed / "toy" / "checkpoints" / "latest"
    wait_for(lambda: latest.is_file() and int(latest.read_text().split("_")[1]) >= 4, process)
    process.kill()  # SIGKILL: no handler runs
    process.communicate(timeout=30)
    step = int(latest.read_text().split("_")[1])  # still a complete checkpoint
    assert (latest.parent / f"step_{step:08d}" / "meta.json").is_file()

    resumed = toy_process(killed, "--max-steps", str(step + 3), "--every", "2")
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr[-2000:]
    assert result_of(stdout) == {"start": step, "step": step + 3, "nonfinite": 0}
    assert f"resumed from {latest.parent / f'step_{step:08d}'} at step {step}" in stderr


def died_at(root: Path, moment: str, step: int, *args: str) -> None:
    """Run ``scripts/die_at.py``: the toy run SIGKILLed at ``moment`` of ``step``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, str(SCRIPTS / "die_at.py"), moment, str(step), "--root", str(root), *args]
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]


@pytest.mark.slow
def test_a_kill_between_the_checkpoint_rename_and_latest_resumes_from_the_new_checkpoint(tmp_path):
    """Killed after ``step_4`` was renamed into place and before ``latest`` named it (its temporary
    file written): the resume starts at step 4, not at step 2, and no temporary file of ``latest`` is left."""
    died_at(tmp_path, "latest", 4, "--max-steps", "100", "--every", "2")
    checkpoints = tmp_path / "toy" / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step_00000002"  # the state the kill left
    assert (
        atomic.leftovers(checkpoints / "latest") and (checkpoints / "step_00000004" / "meta.json").is_file()
    )

    resumed = toy_process(tmp_path, "--max-steps", "4", "--every", "2")
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr[-2000:]
    assert result_of(stdout) == {"start": 4, "step": 4, "nonfinite": 0}
    assert (checkpoints / "latest").read_text().strip() == "step_00000004"
    assert not atomic.leftovers(checkpoints / "latest")


@pytest.mark.slow
def test_metrics_of_steps_lost_to_a_kill_are_logged_once(tmp_path):
    """Killed after logging step 5 (last checkpoint: step 4): the resumed run trains step 5 again, and
    ``metrics.jsonl`` holds each step once."""
    died_at(tmp_path, "logged", 5, "--max-steps", "100", "--every", "2")
    run = tmp_path / "toy"
    assert logged_steps(run) == [1, 2, 3, 4, 5]
    resumed = toy_process(tmp_path, "--max-steps", "7", "--every", "2")
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr[-2000:]
    assert result_of(stdout)["start"] == 4
    assert logged_steps(run) == [1, 2, 3, 4, 5, 6, 7]
    assert "dropped 1 record(s) of steps after 4" in stderr
