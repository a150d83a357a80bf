"""The README's "Your own videos" walkthrough, run line by line on a small UCF-like folder it generates.

Folder -> manifest -> split -> train tokenizer -> tokenize -> train transformer -> predict -> eval, through
the CLI as a user runs it (in this process). Each README line is run as written plus overrides that only
make it small (steps, sizes, evaluation lengths); the lines are read from the README, so the walkthrough
cannot drift from what is tested.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from videogen import cli
from videogen.data.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("Biking", "Diving")
GROUPS, CLIPS, FRAMES, SIZE = 4, 2, 17, 32

# per command: what makes it small (appended to the README line); nothing else changes
SMALL = {
    "train tokenizer": [
        "train.max_steps=3",
        "data.resolution=32",
        "data.crop_size=null",
        "data.image_batch_size=4",
        "data.preload=false",
        "train.engine.micro_batch_size=2",
        "train.log.progress_bar=false",
        "train.log.eval_every_steps=0",
        "eval.num_clips=2",
        "eval.num_samples=1",
    ],
    "tokenize": ["--resolution", "32", "--workers", "0"],
    "train transformer": [
        "train.max_steps=3",
        "data.resolution=32",
        "data.num_workers=0",
        "train.engine.micro_batch_size=2",
        "train.log.progress_bar=false",
        "train.log.eval_every_steps=0",
        "evaluation.num_items=2",
        "sampling.num_videos=1",
        "sampling.steps=2",
    ],
    "predict": ["--steps", "2"],
    "eval transformer": [
        "--limit",
        "2",
        "--tasks",
        "FP,CG",
        "--clips-per-class",
        "1",
        "--steps",
        "2",
        "--out",
        "runs/eval-mine.json",
    ],
}


def walkthrough_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own videos", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split(" #")[0].strip() for line in block.splitlines() if line.startswith("./run.sh")]


def ucf_like_folder(root: Path, write_clip) -> Path:
    """``Class/v_Class_gXX_cYY.mp4`` clips (17 frames, 32x48) and one corrupt file."""
    for c in CLASSES:
        for g in range(1, GROUPS + 1):
            for k in range(1, CLIPS + 1):
                folder = root / c
                folder.mkdir(parents=True, exist_ok=True)
                write_clip(folder / f"v_{c}_g{g:02d}_c{k:02d}.mp4", num_frames=FRAMES, height=SIZE, width=48)
    (root / "Diving" / "v_Diving_g05_c01.mp4").write_bytes(b"not a video at all" * 50)
    return root


def command_of(words: list[str]) -> str:
    return " ".join(words[:2]) if words[0] in ("train", "eval", "data") else words[0]


@pytest.mark.slow
def test_the_readme_walkthrough_runs_end_to_end(tmp_path, monkeypatch, write_clip):
    lines = walkthrough_lines()
    assert [command_of(shlex.split(line)[1:]) for line in lines] == [
        "data manifest",
        "data split",
        "train tokenizer",
        "tokenize",
        "train transformer",
        "predict",
        "eval transformer",
    ]
    videos = ucf_like_folder(tmp_path / "videos", write_clip)
    monkeypatch.chdir(tmp_path)
    for line in lines:
        words = [str(videos) if w == "~/videos" else w for w in shlex.split(line)][1:]
        if words[0] == "predict":
            words[words.index("--input") + 1] = str(videos / "Biking" / "v_Biking_g01_c01.mp4")
        words += SMALL.get(command_of(words), [])
        assert cli.main(words) == 0, line

        if command_of(words) == "data manifest":
            assert (
                len(read_manifest("data/mine/all.jsonl")) == len(CLASSES) * GROUPS * CLIPS
            )  # corrupt one skipped
        if command_of(words) == "data split":
            train, test = read_manifest("data/mine/train.jsonl"), read_manifest("data/mine/test.jsonl")
            group = re.compile(r"_g(\d+)_")
            assert not {group.search(p).group(1) for p in train.paths} & {
                group.search(p).group(1) for p in test.paths
            }
            assert train.classes == CLASSES

    assert Path("pred.mp4").is_file()
    result = json.loads(Path("runs/eval-mine.json").read_text())["transformer_eval"]
    assert set(result["tasks"]) == {"frame_prediction", "class_generation"} and not result["not_trained"]
    assert result["tasks"]["frame_prediction"]["baseline"] == "copy last frame"
    assert result["classifier"]["description"]["classes"] == list(CLASSES)  # your labels, not the digits
