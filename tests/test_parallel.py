"""videogen.parallel: spawned workers give the serial results, and a dead worker ends the run."""

import os

import pytest
import torch

from videogen.parallel import map_unordered


def _square(x: int) -> int:
    return x * x


def _die_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)  # a worker killed mid-task, as a crash in native code does
    return x


def test_workers_give_the_serial_results_after_torch_ran_threads():
    torch.set_num_threads(2)
    torch.randn(256, 256) @ torch.randn(256, 256)  # the parent's thread pool is up before the workers start
    tasks = list(range(11))
    assert sorted(map_unordered(_square, tasks, workers=2, desc="t")) == [x * x for x in tasks]
    assert list(map_unordered(_square, tasks, workers=0, desc="t")) == [x * x for x in tasks]


@pytest.mark.timeout(120)
def test_a_dead_worker_raises_instead_of_hanging():
    with pytest.raises(RuntimeError, match="a worker process died"):
        list(map_unordered(_die_on_three, range(8), workers=2, desc="t"))
