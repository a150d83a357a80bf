"""Faults, drilled for real: never hang, never orphan a process, one line for every bad input.

Where the behaviour is a process's, a real process is run: a decoder stuck in a DataLoader worker
(``scripts/stuck_decoder.py``), a training process SIGKILLed under its stuck worker, SIGTERM to the
launcher of a two-process run (``run.sh train --num-gpus 2``), a launcher that dies under its rank,
a stop signal delivered twice, and files the user may not read or write. We run as root, which
ignores permission bits, so those children drop ``CAP_DAC_OVERRIDE`` / ``CAP_DAC_READ_SEARCH`` with
``setpriv``. What a resume may change is in ``test_resume_rules.py``. Sizes: the tiny tokenizer
narrowed to 16 channels, 5 frames of 32x32, batch 2 (1 per rank with two ranks). Every subprocess
wait has a limit far above what the run needs; no test measures time.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from fault_helpers import (
    ROOT,
    SCRIPTS,
    child_env,
    error_line,
    kill_all,
    left_after,
    logged_steps,
    make_sample,
    overrides,
    run_cli,
    tree_digest,
    wait_until,
)
from inference_helpers import export_tiny_models, smooth_frames, write_manifest_clips
from torch import nn

from videogen import cli
from videogen.training.distributed import free_port
from videogen.training.export import export_pretrained
from videogen.training.tokenizer_config import load_training_config
from videogen.video_io import write_video


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("data"))


# ----------------------------------------------------------------------------- never hang, never orphan


@pytest.fixture(scope="module")
def stuck_manifest(sample, tmp_path_factory) -> Path:
    """The training clips copied under names the stuck decoder hangs on."""
    folder = tmp_path_factory.mktemp("stuck")
    rows = [json.loads(line) for line in sample.train.read_text().splitlines()]
    for i, row in enumerate(rows):
        source = Path(row["path"]) if Path(row["path"]).is_absolute() else sample.train.parent / row["path"]
        row["path"] = str(shutil.copy(source, folder / f"stuck_{i}.mp4"))
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


def start_stuck_run(tmp_path: Path, sample, manifest: Path, name: str, timeout_s: float) -> tuple:
    args = overrides(
        tmp_path,
        sample,
        name,
        **{"data.train": str(manifest), "data.num_workers": 1, "data.timeout_s": timeout_s},
    )
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:  # a file, not a pipe: a stuck worker holding a pipe open cannot block us
        process = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "stuck_decoder.py"), "train", "tokenizer", *args],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return process, log


def test_a_stuck_decoder_fails_the_run_in_one_line_and_leaves_no_process(sample, stuck_manifest, tmp_path):
    name = f"stuck-{uuid.uuid4().hex[:8]}"
    process, log = start_stuck_run(tmp_path, sample, stuck_manifest, name, timeout_s=2)
    try:
        code = process.wait(timeout=150)  # the run needs ~15 s: start, 2 s of data.timeout_s, stop
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the run hung: still running 150 s after start with data.timeout_s=2: {log.read_text()[-2000:]}"
        )
    finally:
        process.kill()
        kill_all(name)
    stderr = log.read_text()
    assert code == 2, stderr[-3000:]
    line = error_line(stderr)
    assert "data loading stalled" in line and "data.timeout_s = 2 s" in line and "stuck_" in line
    assert left_after(name, 10) == []


@pytest.mark.slow
def test_a_stall_on_one_rank_of_two_stops_both_with_one_line_each(sample, stuck_manifest, tmp_path):
    """Rank 0's decoder hangs; rank 1 waits for it in a collective. Rank 0 fails after data.timeout_s and
    skips the final barrier; rank 1 learns that its peer left. Nothing waits for a 30-minute timeout."""
    name = f"stall2-{uuid.uuid4().hex[:8]}"
    extra = {"data.train": str(stuck_manifest), "data.num_workers": 1, "data.timeout_s": 2}
    extra["train.engine.micro_batch_size"] = 1
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [
        str(SCRIPTS / "stuck_decoder.py"),
        "train",
        "tokenizer",
        *overrides(tmp_path, sample, name, **extra),
    ]
    log = tmp_path / "log.txt"
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, env={**child_env(), "STUCK_RANK": "0"}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        process.wait(timeout=200)  # the run needs ~20 s
    except subprocess.TimeoutExpired:
        pytest.fail(f"the two-process run hung after rank 0 stalled: {log.read_text()[-2000:]}")
    finally:
        process.kill()
        kill_all(name)
    text = log.read_text()
    assert process.returncode != 0
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "data.timeout_s = 2 s" in errors[0], text[-3000:]
    assert errors[1] == "error: rank 1: another process of this run stopped; its own message says why"
    assert "[rank0]: Traceback" not in text and "[rank1]: Traceback" not in text
    assert left_after(name, 10) == []


def test_a_killed_training_process_takes_its_stuck_worker_with_it(sample, stuck_manifest, tmp_path):
    name = f"orphan-{uuid.uuid4().hex[:8]}"
    process, log = start_stuck_run(tmp_path, sample, stuck_manifest, name, timeout_s=600)
    try:
        wait_until(lambda: "STUCK" in log.read_text(), "a stuck worker", process, log)
        workers = psutil.Process(process.pid).children(recursive=True)
        assert workers, "the run has no worker process"
        process.kill()  # SIGKILL: no handler, no cleanup in the training process
        process.wait(timeout=30)
        assert left_after(name, 15) == [], "the stuck DataLoader worker outlived its training process"
    finally:
        process.kill()
        kill_all(name)


@pytest.mark.slow
def test_sigterm_to_the_launcher_of_two_processes_checkpoints_and_leaves_no_process(sample, tmp_path):
    name = f"launch-{uuid.uuid4().hex[:8]}"
    extra = {"train.max_steps": 100000, "train.engine.micro_batch_size": 1, "data.num_workers": 1}
    command = ["bash", str(ROOT / "run.sh"), "train", "tokenizer", "--num-gpus", "2"]
    command += ["--master-port", str(free_port()), *overrides(tmp_path, sample, name, **extra)]
    log, run_dir = tmp_path / "launcher.log", tmp_path / name
    try:
        with open(log, "w") as out:
            process = subprocess.Popen(
                command, env=child_env(), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        wait_until(lambda: logged_steps(run_dir) >= 2, "2 logged steps", process, log)
        process.send_signal(signal.SIGTERM)  # what a scheduler or `kill` does to the command it started
        code = process.wait(timeout=180)
        text = log.read_text()
        assert code == 0, text[-3000:]
        latest = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
        meta = json.loads((latest / "meta.json").read_text())
        assert meta["world_size"] == 2 and meta["step"] >= 2
        assert "received SIGTERM" in text and f"stopped at step {meta['step']}" in text
        assert left_after(name, 30) == [], "training processes outlived their launcher"
    finally:
        kill_all(name)


def test_a_rank_whose_launcher_dies_checkpoints_and_stops(tmp_path):
    """A stand-in launcher (a Python process that sets RANK, WORLD_SIZE, ... like deepspeed's) is SIGKILLed:
    its rank notices, writes a checkpoint and exits instead of training on alone."""
    marker = str(tmp_path / f"watch-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "rank.log"
    rank = [sys.executable, str(SCRIPTS / "toy_train.py"), "--root", marker, "--max-steps", "100000"]
    rank += ["--every", "100000", "--sleep", "0.05"]
    launcher_code = (
        "import os, subprocess, sys; "
        "env = {**os.environ, 'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', "
        f"'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': '{free_port()}'}}; "
        f"sys.exit(subprocess.call({rank!r}, env=env, stdout=sys.stderr))"
    )
    with open(log, "w") as out:
        launcher = subprocess.Popen([sys.executable, "-c", launcher_code], env=child_env(), stderr=out)
    try:
        wait_until(lambda: logged_steps(Path(marker) / "toy") >= 3, "3 logged steps", launcher, log)
        launcher.kill()
        launcher.wait(timeout=30)
        assert left_after(marker, 60) == [], "the rank trained on after its launcher died"
        text = log.read_text()
        assert f"the launcher (pid {launcher.pid}) exited" in text and "stopped at step" in text, text[-2000:]
        checkpoints = Path(marker) / "toy" / "checkpoints"
        assert (checkpoints / (checkpoints / "latest").read_text().strip() / "meta.json").is_file()
    finally:
        launcher.kill()
        kill_all(marker)


def test_a_stop_signal_delivered_twice_at_once_still_checkpoints(tmp_path):
    """A launcher and a scheduler both forward SIGTERM: the second copy is the same request, not an abort."""
    command = [
        sys.executable,
        str(SCRIPTS / "toy_train.py"),
        "--root",
        str(tmp_path),
        "--max-steps",
        "100000",
    ]
    command += ["--every", "100000", "--sleep", "0.05"]
    process = subprocess.Popen(
        command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while logged_steps(tmp_path / "toy") < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # delivered and handled (two signals sent at once would merge into one)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-2000:]
    latest = (tmp_path / "toy" / "checkpoints" / "latest").read_text().strip()
    assert (tmp_path / "toy" / "checkpoints" / latest / "meta.json").is_file()


# ----------------------------------------------------------------------------- files the user may not read or write


def without_root_file_access() -> list[str]:
    """A command prefix under which permission bits apply (root ignores them; its children drop the caps)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(
            "running as root and setpriv (util-linux) is missing: root would ignore the permission bits"
        )
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(
            f"cannot drop CAP_DAC_OVERRIDE here ({probe.stderr.strip()}): root would ignore permission bits"
        )
    return prefix


def test_files_that_cannot_be_read_or_written_are_one_line_each(sample, tmp_path):
    prefix = without_root_file_access()
    tokenizer, transformer = export_tiny_models(tmp_path / "models")
    models = ["--tokenizer", str(tokenizer), "--transformer", str(transformer), "--steps", "2"]
    locked = tmp_path / "locked"  # exists, holds nothing, accepts nothing
    locked.mkdir()
    clip = write_video(tmp_path / "clip.mp4", smooth_frames(12, 40, 48), fps=8)
    secret = Path(shutil.copy(clip, tmp_path / "secret.mp4"))
    manifest = write_manifest_clips(tmp_path / "clips", count=2, num_frames=12)
    hidden = Path(shutil.copy(manifest, tmp_path / "clips" / "hidden.jsonl"))
    weights_locked = Path(shutil.copytree(tokenizer, tmp_path / "weights_locked"))
    old_run = tmp_path / "runs" / "old"  # someone else's run folder: its checkpoints folder is read-only
    (old_run / "checkpoints").mkdir(parents=True)
    cases = {
        "run.root": (["train", "tokenizer", *overrides(locked, sample, "x")], "set run.root"),
        "checkpoints": (["train", "tokenizer", *overrides(tmp_path / "runs", sample, "old")], "run folder"),
        "predict --out": (["predict", "--input", clip, "--out", locked / "o.mp4", *models], "--out"),
        "predict --input": (
            ["predict", "--input", secret, "--out", tmp_path / "o.mp4", *models],
            "secret.mp4",
        ),
        "eval --data": (["eval", "tokenizer", "--tokenizer", tokenizer, "--data", hidden], "hidden.jsonl"),
        "weights": (
            ["generate", "--out", tmp_path / "g.png", *models[:1], weights_locked, *models[2:]],
            "weights",
        ),
        "sample --out": (
            ["data", "sample", "--out", locked / "sample", "--count", "2", "--no-real"],
            "--out",
        ),
    }
    (tmp_path / "cases.json").write_text(json.dumps({k: [str(a) for a in v[0]] for k, v in cases.items()}))
    for path in (secret, hidden, weights_locked / "model.safetensors"):
        path.chmod(0)
    for path in (locked, old_run / "checkpoints"):
        path.chmod(0o555)
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, str(SCRIPTS / "cli_cases.py"), str(tmp_path / "cases.json")],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        for path in (locked, old_run / "checkpoints"):
            path.chmod(0o755)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    results = json.loads(lines[-1][len("RESULT ") :])
    for name, (_, needle) in cases.items():
        result = results[name]
        assert result["traceback"] is None, f"{name}: {result['traceback']}"
        assert result["code"] == 2, (name, result["stderr"][-2000:])
        assert needle in error_line(result["stderr"]), (name, result["stderr"][-2000:])
    assert not list(locked.iterdir()) and not list((old_run / "checkpoints").iterdir())  # nothing written


# ----------------------------------------------------------------------------- bad input, one line each


def test_options_may_follow_the_overrides_of_train(monkeypatch):
    import videogen.training.tokenizer_loop as loop

    seen = {}
    monkeypatch.setattr(
        loop, "main", lambda config, overrides: seen.update(config=config, overrides=overrides)
    )
    argv = [
        "train",
        "tokenizer",
        "--config",
        "x.yaml",
        "data.num_frames=9",
        "--resume",
        "never",
        "model.preset=S",
    ]
    assert cli.main(argv) == 0
    assert seen == {
        "config": "x.yaml",
        "overrides": ["data.num_frames=9", "model.preset=S", "train.checkpoint.resume=never"],
    }


def test_on_and_off_overrides_keep_their_meaning():
    cfg = load_training_config(
        None, ["eval.final=off", "train.log.tensorboard=off", "train.log.progress_bar=yes"]
    )
    assert (cfg.eval.final, cfg.train.log.tensorboard, cfg.train.log.progress_bar) == ("off", False, True)


def test_a_run_root_through_a_file_is_one_line(sample, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    code, err = run_cli("train", "tokenizer", *overrides(tmp_path / "file", sample, "x"))
    assert code == 2 and "set run.root to a writable folder" in error_line(err)


def test_damaged_export_weights_are_one_line(tmp_path):
    tokenizer, transformer = export_tiny_models(tmp_path / "models")
    weights = transformer / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, err = run_cli(
        "generate", "--out", tmp_path / "g.png", "--tokenizer", tokenizer, "--transformer", transformer
    )
    assert code == 2 and f"transformer weights '{weights}' are damaged" in error_line(err)


def test_bad_output_and_label_paths_are_one_line_before_any_work(tmp_path, clip_folder):
    tokenizer, _ = export_tiny_models(tmp_path / "models")
    manifest = write_manifest_clips(tmp_path / "clips", count=2, num_frames=12)
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "labels.bin").write_bytes(bytes(range(128, 256)))
    (tmp_path / "a_file").write_text("x")
    cases = [
        (
            [
                "eval",
                "tokenizer",
                "--tokenizer",
                tokenizer,
                "--data",
                manifest,
                "--out",
                tmp_path / "folder.json",
            ],
            "is a folder",
        ),
        (
            [
                "data",
                "manifest",
                clip_folder,
                "--out",
                tmp_path / "m.jsonl",
                "--labels",
                tmp_path / "labels.bin",
            ],
            "not text",
        ),
        (["data", "sample", "--out", tmp_path / "a_file", "--count", "2", "--no-real"], "is a file"),
    ]
    for argv, needle in cases:
        code, err = run_cli(*argv)
        assert code == 2 and needle in error_line(err), argv


def test_a_failed_export_keeps_the_finished_one(tmp_path):
    class Exportable(nn.Module):
        fail = False

        def save_pretrained(self, folder: Path) -> None:
            (folder / "config.yaml").write_text("new config")
            if self.fail:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            (folder / "model.safetensors").write_bytes(b"new weights")

    out = tmp_path / "export"
    out.mkdir()
    (out / "config.yaml").write_text("finished config")
    (out / "model.safetensors").write_bytes(b"finished weights")
    failing = Exportable()
    failing.fail = True
    with pytest.raises(OSError, match="injected"):
        export_pretrained(lambda: failing, {}, out)
    assert tree_digest(out) == {
        "config.yaml": hashlib.sha256(b"finished config").hexdigest(),
        "model.safetensors": hashlib.sha256(b"finished weights").hexdigest(),
    }
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary folder left
    export_pretrained(Exportable, {}, out)
    assert (out / "model.safetensors").read_bytes() == b"new weights"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
