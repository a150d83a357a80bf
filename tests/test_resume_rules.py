"""What ``--resume`` may change (``videogen/training/resume.py``), drilled on a real 2-step tokenizer run.

A refused change is one line naming the key, both values and the fix, and writes nothing (the run's
``config.yaml``, logs and checkpoints stay byte for byte); an allowed one is listed in one line; a new
peak lr is applied (with a line), not silently overridden by the checkpoint's. Sizes as in
``test_faults.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from fault_helpers import ROOT, child_env, error_line, make_sample, overrides, run_cli, tree_digest

from videogen.errors import UserError
from videogen.tokenizer_training.training_config import load_training_config
from videogen.training.distributed import free_port
from videogen.training.lr_schedule import lr_multiplier


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> dict:
    """A 2-step tokenizer run (checkpoint step_00000002) to resume in copies."""
    sample = make_sample(tmp_path_factory.mktemp("data"))
    root = tmp_path_factory.mktemp("runs")
    code, err = run_cli("train", "tokenizer", *overrides(root, sample, "r"))
    assert code == 0, err[-3000:]
    return {"root": root, "sample": sample}


def copy_run(first_run: dict, tmp_path: Path) -> tuple[Path, list[str]]:
    shutil.copytree(first_run["root"] / "r", tmp_path / "r")
    return tmp_path / "r", overrides(tmp_path, first_run["sample"], "r", **{"train.max_steps": 3})


@pytest.mark.parametrize(
    "change, old",
    [
        ("model.base_channels=32", "16"),
        ("model.lfq.bits=8", "12"),  # the default YAML's bits
        ("data.num_frames=9", "5"),
        ("train.engine.micro_batch_size=1", "2"),
        ("train.engine.zero_stage=0", "2"),
        ("train.optimizer.name=adamw", "adam"),
        ("train.seed=7", "0"),
        ("decoder_finetune.fraction=0.5", "0"),
    ],
)
def test_resume_refuses_a_change_to_what_the_run_is(first_run, tmp_path, change, old):
    run_dir, args = copy_run(first_run, tmp_path)
    before = tree_digest(run_dir)
    code, err = run_cli("train", "tokenizer", *args, change)
    key = change.split("=")[0]
    assert code == 2
    line = error_line(err)
    assert f"with {change.replace('=', ' = ')}" in line and f"the checkpoint has {old}" in line
    assert f"set {key}={old}" in line and "start a new run" in line
    assert tree_digest(run_dir) == before  # config.yaml, logs and checkpoints untouched


def test_resume_applies_a_new_peak_lr_and_says_so(first_run, tmp_path):
    run_dir, args = copy_run(first_run, tmp_path)
    old = load_training_config(None, []).train.optimizer.lr
    code, err = run_cli("train", "tokenizer", *args, "train.optimizer.lr=0.01")
    assert code == 0, err[-3000:]
    changed = next(line for line in err.splitlines() if line.startswith("changed since that checkpoint: "))
    assert "train.max_steps 2 -> 3" in changed and f"train.optimizer.lr {old} -> 0.01" in changed
    assert f"generator: peak lr 0.01 from the config replaces the checkpoint's {old:g}" in err
    cfg = load_training_config(None, [*args, "train.optimizer.lr=0.01"])
    expected = 0.01 * lr_multiplier(cfg.train.schedule, 3)(3)  # after step 3's scheduler step
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = next(r["lr/generator"] for r in records if r.get("step") == 3 and "lr/generator" in r)
    assert logged == pytest.approx(expected, rel=1e-6)
    assert "train:\n  max_steps: 3" in (run_dir / "config.yaml").read_text()


def test_resume_never_over_an_earlier_runs_checkpoints_is_refused(first_run, tmp_path):
    run_dir, args = copy_run(first_run, tmp_path)
    before = tree_digest(run_dir)
    code, err = run_cli("train", "tokenizer", *args, "--resume", "never")
    assert code == 2
    assert "holds checkpoints of an earlier run (newest step_00000002)" in error_line(err)
    assert tree_digest(run_dir) == before


def test_a_damaged_checkpoint_is_one_line_naming_it(first_run, tmp_path):
    run_dir, args = copy_run(first_run, tmp_path)
    checkpoint = run_dir / "checkpoints" / "step_00000002"
    (checkpoint / "client_state.pt").write_bytes(b"not a checkpoint")
    code, err = run_cli("train", "tokenizer", *args)
    assert code == 2
    assert f"checkpoint '{checkpoint}' cannot be loaded" in error_line(err)


def test_resume_refuses_another_process_count(tmp_path):
    from videogen.training.resume import check_resume

    with pytest.raises(UserError, match=r"written by 2 process\(es\) and this run has 1: resume with 2"):
        check_resume(tmp_path, {}, {}, saved_world=2, world=1)


@pytest.mark.slow
def test_resuming_a_one_process_run_with_two_is_one_line_per_rank(first_run, tmp_path):
    """``./run.sh train tokenizer --num-gpus 2`` over a checkpoint of one process: each rank says so in one
    line, exit 2, nothing written (before: DeepSpeed's ZeRORuntimeException traceback from each rank)."""
    run_dir, args = copy_run(first_run, tmp_path)
    before = tree_digest(run_dir)
    command = ["bash", str(ROOT / "run.sh"), "train", "tokenizer", "--num-gpus", "2"]
    command += ["--master-port", str(free_port()), *args]
    proc = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and len(set(errors)) == 1, text[-3000:]
    assert "was written by 1 process(es) and this run has 2: resume with 1" in errors[0]
    assert "Traceback" not in text and "ZeRORuntimeException" not in text, text[-3000:]
    assert tree_digest(run_dir) == before
