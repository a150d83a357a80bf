"""The command line through ``run.sh``: usage and exit codes, bad input without tracebacks, data commands."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_sh(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    return subprocess.run(
        ["bash", str(ROOT / "run.sh"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_unknown_command_exits_2_with_usage():
    result = run_sh("bogus")
    assert result.returncode == 2
    assert "unknown command 'bogus'" in result.stderr and "usage: run.sh <command>" in result.stderr
    assert "data" in result.stderr


def test_data_help_exits_0():
    result = run_sh("data", "--help")
    assert result.returncode == 0
    assert "sample" in result.stdout and "manifest" in result.stdout


def test_missing_folder_is_a_one_line_error():
    result = run_sh("data", "manifest", "/nonexistent")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: folder '/nonexistent' does not exist or is not a folder"
    assert "Traceback" not in result.stderr + result.stdout


def test_manifest_command_end_to_end(clip_folder, tmp_path):
    out = tmp_path / "m.jsonl"
    result = run_sh("data", "manifest", str(clip_folder), "--out", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert f"wrote 5 rows to {out}" in result.stdout
    assert "broken.mp4" in result.stdout  # the skipped file and its reason are printed
    assert len(out.read_text().splitlines()) == 5
    assert json.loads((tmp_path / "classes.json").read_text()) == ["cats", "dogs"]
