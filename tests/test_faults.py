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
import torch
from fault_helpers import (
    ROOT,
    SCRIPTS,
    child_env,
    error_line,
    finish,
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
from safetensors.torch import save_file
from torch import nn

from videogen import cli
from videogen.errors import UserError
from videogen.export import export_model, export_pretrained
from videogen.tokenizer_training.training_config import load_training_config
from videogen.training.distributed import free_port
from videogen.training.ema import EMA
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
    code = finish(process, log, name, 150, "the run with data.timeout_s=2")  # it needs ~15 s
    stderr = log.read_text()
    assert code == 2, stderr[-3000:]
    line = error_line(stderr)
    assert "data loading stalled" in line and "data.timeout_s = 2 s" in line and "stuck_" in line
    assert left_after(name, 10) == []


def test_a_worker_that_gives_up_on_missing_files_ends_the_run_in_one_line(sample, tmp_path):
    """Eight manifest rows on an unmounted path and ``data.num_workers=1`` (decoding per step): the worker gives
    up (``DataError``: 10 samples in a row failed) and the run ends with that line, exit 2, no worker
    traceback, no hang, no process left (before: torch's multi-line copy of the worker traceback)."""
    name = f"unmounted-{uuid.uuid4().hex[:8]}"
    rows = [json.loads(line) for line in sample.train.read_text().splitlines()]
    manifest = tmp_path / "unmounted.jsonl"
    lines = [json.dumps({**row, "path": f"/mnt/{name}/{i:05d}.mp4"}) for i, row in enumerate(rows)]
    manifest.write_text("\n".join(lines) + "\n")
    args = overrides(tmp_path, sample, name, **{"data.train": str(manifest)})
    args = [*(a for a in args if not a.startswith("data.num_workers=")), "data.num_workers=1"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "videogen", "train", "tokenizer", *args],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    code = finish(process, log, name, 150, "the run whose data worker gave up")  # it needs ~10 s
    stderr = log.read_text()
    assert code == 2, stderr[-3000:]
    line = error_line(stderr)
    assert "samples in a row failed to decode" in line and f"/mnt/{name}/" in line, line
    assert "DataLoader worker" not in stderr, stderr[-3000:]
    assert left_after(name, 10) == []


def test_an_os_error_in_a_worker_is_one_line_and_a_bug_keeps_its_traceback():
    from torch._utils import ExceptionWrapper

    from videogen.data.loader import worker_error

    def reraised(error: BaseException) -> BaseException:
        try:
            raise error
        except BaseException:
            wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
        try:
            wrapper.reraise()
        except BaseException as e:
            return e
        raise AssertionError("not re-raised")

    denied = worker_error(reraised(PermissionError(13, "Permission denied", "/data/a.mp4")))
    assert isinstance(denied, UserError) and "\n" not in str(denied)
    assert "[Errno 13] Permission denied: '/data/a.mp4'" in str(denied)
    assert worker_error(reraised(ZeroDivisionError("a bug"))) is None
    assert worker_error(UserError("not from a worker")) is None


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
    finish(process, log, name, 200, "the two-process run whose rank 0 stalled")  # it needs ~20 s
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
        "generate --out": (["generate", "--out", locked / "g.png", *models], "--out"),
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


@pytest.mark.parametrize(
    "line, needle",
    [
        ("42", "line 4 is 42, not a JSON object"),
        ("null", "line 4 is null, not a JSON object"),
        ('"a.mp4"', 'line 4 is "a.mp4", not a JSON object'),
        ('{"num_frames": "abc"}', 'line 4: "num_frames" is "abc", not a whole number'),
        ('{"path": null}', 'line 4: "path" is null, not a string'),
        ('{"fps": [25]}', 'line 4: "fps" is [25], not a number'),
    ],
)
def test_a_manifest_line_of_the_wrong_shape_is_one_line(sample, tmp_path, line, needle):
    """Valid JSON that is not an object, or a field of the wrong type: one line naming the file, the line
    and the value, exit 2 (before: a TypeError / ValueError traceback from deep in the loader)."""
    rows = sample.train.read_text().splitlines()
    if line.startswith("{"):  # a good row with one field replaced
        line = json.dumps({**json.loads(rows[3]), **json.loads(line)})
    manifest = sample.train.parent / f"bad-{uuid.uuid4().hex[:8]}.jsonl"
    manifest.write_text("\n".join([*rows[:3], line, *rows[4:]]) + "\n")
    try:
        code, err = run_cli(
            "train", "tokenizer", *overrides(tmp_path, sample, "x", **{"data.train": str(manifest)})
        )
    finally:
        manifest.unlink()
    assert code == 2 and needle in error_line(err) and str(manifest) in error_line(err), err[-2000:]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[str]:
    tokenizer, transformer = export_tiny_models(tmp_path_factory.mktemp("models"))
    return ["--tokenizer", str(tokenizer), "--transformer", str(transformer), "--steps", "2"]


def test_bad_devices_frame_counts_and_rates_are_one_line_that_names_them(models, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", smooth_frames(12, 40, 48), fps=8)
    predict = ["predict", "--input", clip, "--out", tmp_path / "o.mp4", *models]
    cases = [
        ([*predict, "--device", "foo"], "device 'foo' is unknown; use cpu, cuda or cuda:N"),
        ([*predict, "--num-frames", "-3"], "--num-frames -3: the number of frames to output must be >= 1"),
        ([*predict, "--cond-frames", "0"], "--cond-frames 0: the number of condition frames must be >= 1"),
        ([*predict, "--model-fps", "0"], "--model-fps 0 must be > 0"),
        ([*predict, "--model-fps", "-5"], "--model-fps -5 must be > 0"),
        (["generate", "--out", tmp_path / "g.mp4", "--frames", "0", *models], "--frames 0"),
        (
            ["eval", "transformer", "--data", "x.jsonl", "--model-fps", "0", *models],
            "--model-fps 0 must be > 0",
        ),
    ]
    if not torch.cuda.is_available():  # before: "weights ... do not match its config.yaml: pin_memory=..."
        cases.append(
            ([*predict, "--device", "cuda"], "device 'cuda' asked for, but this machine has no usable")
        )
    for argv, needle in cases:
        code, err = run_cli(*argv)
        assert code == 2 and needle in error_line(err), (argv, err[-2000:])
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "g.mp4").exists()


def test_a_damaged_input_video_is_one_line_without_decoder_noise(models, tmp_path):
    """FFmpeg's and decord's own log lines ("moov atom not found", "video_reader.cc:83: ERROR opening")
    are silenced: stderr holds the one error line and nothing else, and it comes before any model loads."""
    clip = write_video(tmp_path / "clip.mp4", smooth_frames(12, 40, 48), fps=8).read_bytes()
    inputs = {"garbage.mp4": bytes(range(256)) * 16, "truncated.mp4": clip[: len(clip) // 3]}
    for name, data in inputs.items():
        (tmp_path / name).write_bytes(data)
        argv = ["predict", "--input", tmp_path / name, "--out", tmp_path / "o.mp4", *models]
        proc = subprocess.run(
            [sys.executable, "-m", "videogen", *map(str, argv)],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        line = f"error: video '{tmp_path / name}' cannot be opened"
        assert proc.returncode == 2 and proc.stderr.startswith(line), proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]


def test_options_may_follow_the_overrides_of_train(monkeypatch):
    import videogen.tokenizer_training.loop as loop

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


def test_numbers_in_scientific_notation_are_numbers_as_in_the_readme():
    """YAML 1.1 reads ``2e-4`` and ``1e6`` (no dot) as strings; they were refused as "must be a number"."""
    for text, value in (("2e-4", 2e-4), ("1e6", 1e6), ("1.0e6", 1e6), ("+3E+2", 300.0), (".5e1", 5.0)):
        assert load_training_config(None, [f"train.optimizer.lr={text}"]).train.optimizer.lr == value
    cfg = load_training_config(None, ["loss.gan.r1_weight=1e1", "train.max_steps=1e3", "run.name=1e3"])
    assert (cfg.loss.gan.r1_weight, cfg.train.max_steps, cfg.run.name) == (10.0, 1000, "1e3")
    with pytest.raises(UserError, match="'train.optimizer.lr' = 'abc' must be a number"):
        load_training_config(None, ["train.optimizer.lr=abc"])
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    example = next(x for x in lines if x.startswith("./run.sh train") and "lr=2e-4" in x).split()
    assert example[:4] == ["./run.sh", "train", "tokenizer", "--config"], example
    cfg = load_training_config(ROOT / example[4], example[5:])
    assert cfg.train.optimizer.lr == 2e-4 and cfg.data.num_frames == 9


def test_on_and_off_overrides_keep_their_meaning():
    cfg = load_training_config(
        None, ["eval.final=off", "train.log.tensorboard=off", "train.log.progress_bar=yes"]
    )
    assert (cfg.eval.final, cfg.train.log.tensorboard, cfg.train.log.progress_bar) == ("off", False, True)


def test_a_run_root_through_a_file_is_one_line(sample, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    code, err = run_cli("train", "tokenizer", *overrides(tmp_path / "file", sample, "x"))
    assert code == 2 and "set run.root to a writable folder" in error_line(err)


@pytest.mark.parametrize("kind", ["tokenizer", "transformer"])
def test_damaged_export_weights_are_one_line(tmp_path, kind):
    tokenizer, transformer = export_tiny_models(tmp_path / "models")
    weights = (tokenizer if kind == "tokenizer" else transformer) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated: SafetensorError
    code, err = run_cli(
        "generate", "--out", tmp_path / "g.png", "--tokenizer", tokenizer, "--transformer", transformer
    )
    assert code == 2 and f"{kind} weights '{weights}' are damaged" in error_line(err)
    assert f"./run.sh train {kind}" in error_line(err)


def test_outputs_under_proc_are_one_line(sample, models, tmp_path):
    """/proc accepts no new files (ENOENT, not EACCES): still one line naming the path, before any work."""
    clip = write_video(tmp_path / "clip.mp4", smooth_frames(12, 40, 48), fps=8)
    cases = [
        (["predict", "--input", clip, "--out", "/proc/videogen-test/o.mp4", *models], "--out"),
        (["generate", "--out", "/proc/o.png", *models], "--out '/proc/o.png' cannot be written"),
        (["data", "sample", "--out", "/proc/videogen-sample", "--count", "2", "--no-real"], "--out"),
        (["train", "tokenizer", *overrides(Path("/proc"), sample, "x")], "set run.root to a writable folder"),
    ]
    for argv, needle in cases:
        code, err = run_cli(*argv)
        assert code == 2 and needle in error_line(err), (argv, err[-2000:])


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


def test_a_killed_export_leaves_the_finished_one_and_the_next_export_tidies_up(tmp_path):
    """SIGKILL half-way through an export (``config.yaml`` written, no weights yet): the finished export
    stays as it was and no export appears where there was none (before: a folder holding only
    ``config.yaml``); the next export removes the dead process's temporary folder."""
    finished, fresh = tmp_path / "export", tmp_path / "fresh"
    finished.mkdir()
    (finished / "config.yaml").write_text("finished config")
    (finished / "model.safetensors").write_bytes(b"finished weights")
    before = tree_digest(finished)
    code = (
        "import os, signal, sys; from pathlib import Path; from torch import nn; "
        "from videogen.export import export_pretrained\n"
        "class Dies(nn.Module):\n"
        "    def save_pretrained(self, folder):\n"
        "        (Path(folder) / 'config.yaml').write_text('new config')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "export_pretrained(Dies, {}, sys.argv[1])\n"
    )
    for out in (finished, fresh):
        proc = subprocess.run([sys.executable, "-c", code, str(out)], env=child_env(), timeout=120)
        assert proc.returncode == -signal.SIGKILL
    assert tree_digest(finished) == before and not fresh.exists()
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == [".export.tmp", ".fresh.tmp", "export"]

    class Exportable(nn.Module):
        def save_pretrained(self, folder: Path) -> None:
            (folder / "config.yaml").write_text("new config")
            save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))

    for out in (finished, fresh):
        export_pretrained(Exportable, {}, out)
        assert (out / "config.yaml").read_text() == "new config"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "fresh"]  # the dead process's are gone


def test_exports_and_checkpoints_follow_the_umask(tmp_path):
    """safetensors writes its files 0600; an export (and a checkpoint's EMA file) gets the mode any other
    new file gets, here 0640 under umask 027."""
    old = os.umask(0o027)
    try:
        export_model({"w": torch.zeros(2)}, {"size": 2}, "toy", tmp_path / "export")
        ema = EMA(nn.Linear(2, 2), 0.9)
        ema.save(tmp_path / "ema.safetensors")
    finally:
        os.umask(old)
    modes = {
        p.name: oct(p.stat().st_mode & 0o777)
        for p in [*(tmp_path / "export").iterdir(), tmp_path / "ema.safetensors"]
    }
    assert modes == {"config.yaml": "0o640", "model.safetensors": "0o640", "ema.safetensors": "0o640"}
