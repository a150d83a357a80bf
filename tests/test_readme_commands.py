"""Every ``./run.sh`` line of the README is one the CLI accepts, so an example cannot drift from it.

The command lines are read from the README itself (fenced blocks and inline code): each one is parsed by
the parser of its command (options that do not exist, a missing argument, an override before an
option), ``train`` lines also load their config with their overrides (unknown keys, bad values, a
config file that is not there), ``bench`` lines name a benchmark that exists, and run.sh's own launcher
flags (``--num-gpus N`` ...) are the ones run.sh hands to the launcher.

Run as written, not only parsed: every use of the default exports (predict, interpolate, inpaint,
outpaint, generate, eval; below, on tiny random exports) and the "Your own videos" walkthrough
(tests/test_walkthrough.py: manifest, split, train both models, tokenize, predict, eval). Parsed only:
``setup`` / ``test`` (run.sh's own), the default training runs and ``demo`` (minutes each; their short
forms are run by tests/test_tokenizer_training.py, test_transformer_training.py and test_demo.py),
lines for GPUs or for datasets not on this machine (``--num-gpus 8``, ``~/UCF-101``), and ``bench``
(smoke-run by tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest
import torch

from videogen import cli
from videogen.commands import bench

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LAUNCHER_FLAGS = ("--num-gpus", "--num-nodes", "--hostfile", "--master-port", "--master-addr")


def readme_commands() -> list[str]:
    """The ``./run.sh ...`` command lines of the README: lines of fenced blocks and inline code spans."""
    text = README.read_text()
    found: list[str] = []
    in_block = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            if line.startswith("./run.sh"):
                found.append(line.split(" #")[0].strip())
            continue
        found += [m.strip() for m in re.findall(r"`(\./run\.sh[^`]*)`", line)]
    return [line for line in dict.fromkeys(found) if "..." not in line]  # "train ... --num-gpus N": a pattern


COMMANDS = readme_commands()


def test_the_readme_has_examples_of_every_command():
    named = {shlex.split(line)[1] for line in COMMANDS if len(shlex.split(line)) > 1}
    assert set(cli.COMMANDS) | {"setup", "test"} <= named, sorted(named)


def strip_launcher_flags(words: list[str]) -> list[str]:
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in LAUNCHER_FLAGS:
            skip = True
        elif not word.startswith(tuple(f"{flag}=" for flag in LAUNCHER_FLAGS)):
            out.append(word)
    return out


def parse(words: list[str]) -> argparse.Namespace:
    """What ``cli.main`` does before running: the command's own parser on its arguments."""
    command = words[0]
    assert command in cli.COMMANDS, f"unknown command {command!r}"
    module = importlib.import_module(f"videogen.commands.{cli.COMMANDS[command][0]}")
    parser = argparse.ArgumentParser(prog=f"run.sh {command}")
    module.add_arguments(parser, command)
    parse_args = (
        parser.parse_intermixed_args if getattr(module, "INTERMIXED_ARGS", False) else parser.parse_args
    )
    try:
        return parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"the CLI refuses the README's line: ./run.sh {shlex.join(words)}")


def load_train_config(args: argparse.Namespace) -> None:
    overrides = list(args.overrides) + ([f"train.checkpoint.resume={args.resume}"] if args.resume else [])
    if args.what == "tokenizer":
        from videogen.tokenizer_training.training_config import load_training_config
    else:
        from videogen.transformer_training.training_config import load_training_config
    config = args.config or ROOT / "configs" / args.what / "default.yaml"
    assert Path(ROOT / config).is_file(), f"config {config} is not in the repository"
    load_training_config(ROOT / config, overrides)


@pytest.mark.parametrize("line", COMMANDS)
def test_a_readme_command_line_is_accepted(line: str):
    words = shlex.split(line)[1:]
    assert words, line
    if words[0] in ("setup", "test"):  # run.sh's own: setup takes nothing, test hands pytest its arguments
        assert words[0] == "test" or len(words) == 1, line
        return
    run_sh = (ROOT / "run.sh").read_text()
    for flag in LAUNCHER_FLAGS:
        if flag in words:
            assert flag in run_sh, f"run.sh does not hand {flag} to the launcher"
    args = parse(strip_launcher_flags(words))
    if words[0] == "train":
        load_train_config(args)
    if words[0] == "bench":
        assert args.name in bench.available(), f"no benchmark {args.name!r} ({line})"


# ----------------------------------------------------------------------------- running the uses

USES = ("predict", "interpolate", "inpaint", "outpaint", "generate", "eval")
# what only makes a line small: fewer sampling steps and generated samples (nothing else changes)
SMALL_USE = {"eval transformer": ["--samples-per-class", "2", "--clips-per-class", "1", "--steps", "2"]}


def write_sample_like_files(root: Path) -> None:
    """Where the README's lines look: the two default exports (tiny, random), the files they name
    (clip.mp4, a.png, b.png, a held-out digit clip) and labelled manifests under data/sample/."""
    from inference_helpers import NUM_CLASSES, export_tiny_models, smooth_frames

    from videogen.data.manifest import write_classes, write_manifest
    from videogen.video_io import write_image, write_video

    tokenizer, transformer = export_tiny_models(root / "models", size=64)  # the default runs' frames
    (root / "runs" / "tokenizer-default").mkdir(parents=True)
    (root / "runs" / "transformer-default").mkdir(parents=True)
    tokenizer.rename(root / "runs" / "tokenizer-default" / "export")
    transformer.rename(root / "runs" / "transformer-default" / "export")
    frames = smooth_frames(20, 64, 64)
    write_video(root / "clip.mp4", frames, fps=8)
    write_image(root / "a.png", frames[0])
    write_image(root / "b.png", frames[-1])
    sample = root / "data" / "sample"
    rows = []
    for i in range(NUM_CLASSES):
        name = f"digits/val/{i:05d}.mp4"
        write_video((sample / name), smooth_frames(20, 64, 64, seed=i), fps=8)
        rows.append({"path": name, "num_frames": 20, "fps": 8.0, "height": 64, "width": 64, "label": i})
    write_classes(sample, [f"class{i}" for i in range(NUM_CLASSES)])
    for split in ("train", "val", "test"):  # the README evaluates on val.jsonl and on test.jsonl
        write_manifest(sample / f"{split}.jsonl", rows)


@pytest.mark.slow
def test_the_readme_uses_run_on_tiny_exports(tmp_path, monkeypatch):
    """Every predict / interpolate / inpaint / outpaint / generate / eval line of the README that reads
    the default exports runs as written (tiny random exports stand in for the trained ones) and writes
    its output. Lines naming other exports are run by tests/test_walkthrough.py."""
    lines = [
        line
        for line in COMMANDS
        if shlex.split(line)[1] in USES
        and "--transformer" not in line
        and "--tokenizer runs/tokenizer-mine" not in line
    ]
    assert len(lines) >= 12, lines
    write_sample_like_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    for line in lines:
        words = shlex.split(line)[1:]
        use = " ".join(words[:2]) if words[0] == "eval" else words[0]
        words += SMALL_USE.get(use, ["--steps", "2"] if use != "eval tokenizer" else [])
        assert cli.main(words) == 0, line
        if "--out" in words:
            assert Path(words[words.index("--out") + 1]).is_file(), line
    assert Path("runs/transformer-default/eval").is_dir()  # eval's default output folder
