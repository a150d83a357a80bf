"""``python stuck_decoder.py <videogen args>``: the CLI, with a decoder that never returns on some files.

Opening any video whose name contains ``stuck`` prints ``STUCK <path>`` to stderr and then sleeps for
an hour, as a native decoder hung on a damaged file or a dead network mount would (it ignores the
DataLoader's shutdown request). With ``STUCK_RANK=r`` only rank ``r`` of a multi-process run hangs.
Everything else is the real ``python -m videogen``.
"""

from __future__ import annotations

import os
import sys
import time

import torch  # noqa: F401  (before decord, always)

import videogen.video_io as video_io
from videogen.cli import main

_open = video_io._open_decord


def _open_or_hang(path):
    if "stuck" in str(path) and os.environ.get("STUCK_RANK", os.environ.get("RANK")) == os.environ.get(
        "RANK"
    ):
        print(f"STUCK {path}", file=sys.stderr, flush=True)
        time.sleep(3600)
    return _open(path)


video_io._open_decord = _open_or_hang

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
