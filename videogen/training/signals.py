"""SIGINT / SIGTERM -> "write a checkpoint at the next step boundary and exit 0".

The handler only sets a flag; the training loop polls :meth:`StopSignal.requested` (a collective, so
every rank stops at the same step even when only one received the signal). A second signal of the
same kind gets the previous behaviour (Ctrl-C twice aborts at once).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import torch

from videogen.training.distributed import any_rank

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Install with ``with StopSignal(verbose=dist.is_main) as stop:``; poll ``stop.requested(device)``."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS, verbose: bool = True):
        self.signals = signals
        self.verbose = verbose
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # the next one acts at once
        if self.verbose:
            print(
                f"\n[videogen] received {signal.Signals(signum).name}: saving a checkpoint at the end of this "
                "step, then stopping (send it again to abort without saving)",
                file=sys.stderr,
                flush=True,
            )

    def install(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                previous = signal.signal(signum, self._handle)
                self._previous[signum] = previous if previous is not None else signal.SIG_DFL
        return self

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def __enter__(self) -> StopSignal:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def requested(self, device: torch.device) -> bool:
        """True on every rank when any rank received a stop signal (every rank must call this)."""
        return any_rank(self.received is not None, device)
