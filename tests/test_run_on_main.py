"""``run_on_main``: rank 0's one-off work (the token cache) may outlast the process group's timeout.

Two gloo ranks whose default group times out after 2 seconds: rank 0 works for 5. A wait on the default
group (what the cache step did before: the other ranks sat in an all-reduce) dies of the timeout; the
wait of ``run_on_main`` does not, and a failure on rank 0 reaches the other rank as one line.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import time

import torch
import torch.distributed as dist

from videogen.training.distributed import run_on_main

GROUP_TIMEOUT_S, WORK_S = 2, 5


def _worker(rank: int, init_file: str, mode: str, queue) -> None:
    timeout = datetime.timedelta(seconds=GROUP_TIMEOUT_S)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=2, timeout=timeout
    )
    try:

        def work() -> None:
            time.sleep(WORK_S)
            if mode == "fails":
                raise ValueError("the cache could not be made")

        try:
            if mode == "default group":
                if rank == 0:
                    work()
                dist.all_reduce(torch.zeros(1))  # the old wait
            else:
                run_on_main(work, "prepare the token cache")
            queue.put((rank, "ok"))
        except Exception as e:  # noqa: BLE001 - what each rank saw is the result
            queue.put((rank, f"{type(e).__name__}: {str(e).splitlines()[0]}"))
    finally:
        dist.destroy_process_group()


def run_two_ranks(tmp_path, mode: str) -> dict[int, str]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    processes = [ctx.Process(target=_worker, args=(r, str(tmp_path / "init"), mode, queue)) for r in range(2)]
    for p in processes:
        p.start()
    results = dict(queue.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(timeout=60)
    return results


def test_the_waiting_rank_outlasts_the_group_timeout(tmp_path):
    assert run_two_ranks(tmp_path, "works") == {0: "ok", 1: "ok"}


def test_a_wait_on_the_default_group_times_out(tmp_path):
    """The control: the same work, waited for on the default group, kills the waiting rank."""
    results = run_two_ranks(tmp_path, "default group")
    assert results[1] != "ok", results


def test_a_failure_on_rank_0_is_raised_on_every_rank(tmp_path):
    results = run_two_ranks(tmp_path, "fails")
    assert results[0] == "ValueError: the cache could not be made"
    assert results[1] == "UserError: rank 0 could not prepare the token cache (see its message)"
