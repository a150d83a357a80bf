"""Run one function over many independent file tasks in worker processes, with a progress bar.

Workers are spawned, never forked: a fork of a process that has run torch ops (its OpenMP pool, the
tqdm monitor thread) can die in the child ("terminate called ... No such process") or hang, and a
``multiprocessing.Pool`` whose worker died waits forever. A spawned worker starts clean, runs one
torch thread, and a dead one ends the run with an error instead of a hang. Each task must be
picklable and ``fn`` a module-level function (or a ``functools.partial`` of one).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import torch
from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def map_unordered(
    fn: Callable[[T], R], tasks: Iterable[T], workers: int, desc: str, unit: str = "file", leave: bool = True
) -> Iterator[R]:
    """``fn(task)`` for every task, yielded as each finishes (in this process when ``workers <= 1``)."""
    tasks = list(tasks)
    with tqdm(total=len(tasks), desc=desc, unit=unit, dynamic_ncols=True, leave=leave) as bar:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                yield fn(task)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        workers = min(workers, len(tasks))
        with ProcessPoolExecutor(workers, context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            pending = iter(tasks)
            running = {pool.submit(fn, t) for _, t in zip(range(2 * workers), pending)}  # bounded queue
            try:
                while running:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
                        bar.update()
                    running |= {pool.submit(fn, t) for _, t in zip(range(len(done)), pending)}
            except BrokenProcessPool as e:
                raise RuntimeError(f"{desc}: a worker process died ({e}); run again with workers 1") from e
            finally:
                for future in running:
                    future.cancel()
