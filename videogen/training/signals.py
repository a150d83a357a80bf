"""SIGINT / SIGTERM -> "write a checkpoint at the next step boundary and exit 0".

The handler only sets a flag; the training loop polls :meth:`StopSignal.requested` (a collective, so
every rank stops at the same step even when only one received the signal). A second SIGINT aborts at
once (Ctrl-C twice). A SIGTERM within ``REPEAT_GRACE_S`` of the first stop signal is the same request
arriving again (a launcher and a job scheduler both forward it) and is ignored, also while the
process exits after its checkpoint (SIGTERM stays ignored then: Python would otherwise restore the
default action during shutdown); a later SIGTERM aborts. :func:`request_stop` makes the same request
from code (the launcher watchdog of :mod:`videogen.training.distributed` calls it).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType

import torch

from videogen.collectives import any_rank

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_GRACE_S = 2.0

_active: StopSignal | None = None  # the installed handler, if a training loop is running
_ignored_since_stop: dict[int, object] = {}  # signal -> the handler to restore when a loop installs again


class StopSignal:
    """Install with ``with StopSignal(verbose=dist.is_main) as stop:``; poll ``stop.requested(device)``."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS, verbose: bool = True):
        self.signals = signals
        self.verbose = verbose
        self.received: int | None = None
        self._first = 0.0
        self._previous: dict[int, object] = {}

    def request(self, signum: int, why: str) -> None:
        """Ask the loop to checkpoint and stop (once; what a first signal does)."""
        if self.received is not None:
            return
        self.received, self._first = signum, time.monotonic()
        if self.verbose:
            print(
                f"\n[videogen] {why}: saving a checkpoint at the end of this step, then stopping "
                "(send SIGINT, or SIGTERM after a few seconds, to abort without saving)",
                file=sys.stderr,
                flush=True,
            )

    def _in_grace(self, signum: int) -> bool:
        return (
            signum == signal.SIGTERM
            and self.received is not None
            and time.monotonic() - self._first < REPEAT_GRACE_S
        )

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.request(signum, f"received {signal.Signals(signum).name}")
        elif not self._in_grace(signum):  # abort: the previous behaviour
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)

    def install(self) -> StopSignal:
        global _active
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                previous = signal.signal(signum, self._handle)
                if previous is signal.SIG_IGN and signum in _ignored_since_stop:
                    previous = _ignored_since_stop.pop(signum)
                self._previous[signum] = previous if previous is not None else signal.SIG_DFL
            _active = self
        return self

    def uninstall(self) -> None:
        global _active
        for signum, previous in self._previous.items():
            if self._in_grace(signum):  # a copy of the request may still come while the process exits
                _ignored_since_stop[signum] = previous
                signal.signal(signum, signal.SIG_IGN)
            else:
                signal.signal(signum, previous)
        self._previous.clear()
        if _active is self:
            _active = None

    def __enter__(self) -> StopSignal:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def requested(self, device: torch.device) -> bool:
        """True on every rank when any rank received a stop signal (every rank must call this)."""
        return any_rank(self.received is not None, device)


def request_stop(why: str) -> None:
    """Stop as SIGTERM would: through the training loop's handler if one is installed, else by the signal."""
    active = _active
    if active is not None:
        active.request(signal.SIGTERM, why)
    else:
        os.kill(os.getpid(), signal.SIGTERM)
