"""Bad data: ``DataError`` and the ``FailureMonitor`` that caps how many files may fail to decode.

Datasets never crash on one bad file: they substitute another sample and report the number of
substitutions in each item's ``num_failed``. Those counts travel with the batch from forked
workers to the main process, where :class:`FailureMonitor` adds them up, logs them and stops the
run once too large a fraction of files failed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from videogen.errors import UserError

logger = logging.getLogger("videogen.data")


class DataError(UserError):
    """The data as a whole is unusable: too many broken files, an empty or malformed manifest, no full batch."""


class FailureMonitor:
    """Count decode failures in the main process and raise :class:`DataError` above a fraction.

    ``fraction = failed / (failed + delivered)``: of all the files a loader tried, the share that
    could not be decoded. Checked only after ``min_samples`` delivered samples, so one bad file in
    the first batch does not stop a run. Logs a warning each time the count doubles.
    """

    def __init__(self, max_fraction: float = 0.1, min_samples: int = 64, name: str = "train") -> None:
        self.max_fraction = max_fraction
        self.min_samples = min_samples
        self.name = name
        self.failed = 0
        self.seen = 0
        self._next_log = 1

    @property
    def fraction(self) -> float:
        tried = self.failed + self.seen
        return self.failed / tried if tried else 0.0

    def update(self, batch: Mapping[str, Any]) -> int:
        """Add one batch (a dict with ``num_failed`` per item); returns the failures in it."""
        num_failed = batch["num_failed"]
        if isinstance(num_failed, torch.Tensor):
            new_failed, delivered = int(num_failed.sum()), int(num_failed.numel())
        else:
            new_failed, delivered = int(sum(num_failed)), len(num_failed)
        self.seen += delivered
        self.failed += new_failed
        if self.failed >= self._next_log:
            logger.warning(
                "%s data: %d of %d files failed to decode so far (%.1f%%; the run stops above %.1f%%)",
                self.name,
                self.failed,
                self.failed + self.seen,
                100 * self.fraction,
                100 * self.max_fraction,
            )
            while self._next_log <= self.failed:
                self._next_log *= 2
        if self.seen >= self.min_samples and self.fraction > self.max_fraction:
            raise DataError(
                f"{self.name} data: {self.failed} of {self.failed + self.seen} files failed to decode "
                f"({100 * self.fraction:.1f}% > data.max_failure_fraction={self.max_fraction}); "
                "rebuild the manifest with `./run.sh data manifest` to drop broken files"
            )
        return new_failed

    def state_dict(self) -> dict[str, int]:
        return {"failed": self.failed, "seen": self.seen}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.failed, self.seen = int(state["failed"]), int(state["seen"])
        self._next_log = 1
        while self._next_log <= self.failed:
            self._next_log *= 2
