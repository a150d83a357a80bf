"""Build a JSONL manifest from a folder of videos (same as ``./run.sh data manifest``).

    python data_tools/build_manifest.py FOLDER --out FILE.jsonl [--labels FILE] [--workers N]

Every file is decoded once to verify its frame count; labels come from sub-folder names (UCF-101
layout) or a label file; skipped files are listed with their reason in ``FILE.skipped.jsonl``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videogen.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["data", "manifest", *sys.argv[1:]]))
