"""The prepared GPU check runs where no GPU is: its ``--smoke`` mode, the same code with tiny models on
the CPU, so the script a GPU session depends on cannot rot unnoticed. (No timing is asserted.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
from fault_helpers import ROOT, child_env


@pytest.mark.slow
def test_the_gpu_check_passes_its_smoke_run():
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--steps", "1"]
    env = {**child_env(), "CUDA_VISIBLE_DEVICES": ""}  # the CPU path, even on a machine with a GPU
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    for check in (
        "tokenizer train step",
        "tokenizer GAN step",
        "transformer train step",
        "12-step sampling",
        "exports",
    ):
        assert f"| {check} |" in table, table
    assert "FAILED" not in table
    assert "not run: attention 'xformers' needs a CUDA device" in table  # said, not a failure


def test_the_gpu_check_without_a_gpu_is_one_line():
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")]
    env = {**child_env(), "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: no CUDA GPU here; `./run.sh bench gpu --smoke` runs the same checks on the CPU"
    ]


def test_the_token_diagnostic_prints_its_three_tables(tmp_path):
    """``bench tokens`` on a tiny random export and 2 generated clips: the tables a study reads."""
    from fault_helpers import make_sample
    from inference_helpers import export_tiny_models

    tokenizer, _ = export_tiny_models(tmp_path)
    sample = make_sample(tmp_path)
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_tokens.py"),
        *("--tokenizer", str(tokenizer), "--data", str(sample.val), "--resolution", "32"),
        *("--num-frames", "5", "--start", "4", "--offsets", "0,4", "--bits"),
    ]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| 0 | " in out and "| 4 | " in out  # one row per window start
    assert "| latent frame | same id as the previous latent frame" in out
    assert out.count("\n| ") >= 2 + 2 + 6  # 2 windows, 2 latent frames, 6 sign bits (+ headers)
    assert "all bits kept:" in out
