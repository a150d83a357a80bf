"""Process-group setup for one CPU process up to many GPUs on many nodes, and small collectives.

A single process needs no launcher: the rendezvous variables DeepSpeed expects (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) are filled in when no launcher set
them (DeepSpeed would otherwise look for MPI). Several processes come from the ``deepspeed``
launcher or ``torchrun``, which set them. The backend is NCCL on GPU and gloo on CPU
(``DS_ACCELERATOR=cpu``). :func:`teardown_distributed` barriers and destroys the group: two-rank runs
otherwise abort at interpreter exit now and then (after an error it only destroys it: the other ranks
may be inside another collective, and a barrier would wait for them forever).

A rank started by a launcher watches the launcher's processes (:func:`watch_launcher`): if one of
them exits (killed, or its own parent gone), the rank stops as on SIGTERM, writing a checkpoint, so
no training process is ever left running without the command that started it.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from videogen.collectives import world_size

LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global ``rank`` of ``world_size``, ``local_rank`` on its node, its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str
    filled_env: tuple[str, ...] = ()  # launcher variables we set ourselves (removed again at teardown)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    """A TCP port that was free a moment ago on this host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fill_single_process_env() -> tuple[str, ...]:
    """Set the rendezvous variables for a launcher-less single process; return the names set."""
    if "RANK" in os.environ or "WORLD_SIZE" in os.environ:
        os.environ.setdefault("LOCAL_RANK", os.environ.get("RANK", "0"))
        return ()
    defaults = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    filled = tuple(name for name in LAUNCHER_VARS if name not in os.environ)
    for name in filled:
        os.environ[name] = defaults[name]
    return filled


def use_cuda() -> bool:
    """GPU training unless CUDA is missing or DeepSpeed was told to use its CPU accelerator."""
    return torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu"


def setup_distributed() -> DistInfo:
    """Join (or create) the process group and pick this rank's device. Idempotent within a process."""
    cuda = use_cuda()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed resolves its accelerator
    filled = _fill_single_process_env()
    backend = "nccl" if cuda else "gloo"
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    import deepspeed  # slow import: only when a run starts

    # creates the group, or only DeepSpeed's handle when torch.distributed is already initialized
    deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if not filled:  # started by a launcher: stop (with a checkpoint) if the launcher goes away
        watch_launcher(_launcher_gone)
    return DistInfo(rank, local_rank, world_size, device, backend, filled)


def _launcher_gone(pid: int) -> None:
    from videogen.training.signals import request_stop  # signals imports this module

    request_stop(f"the launcher (pid {pid}) exited")


def launcher_processes() -> list:
    """The processes above this one that run Python (launchers: deepspeed, its per-node launch, torchrun,
    run.sh's supervisor), up to the first that does not (a shell, srun, init). Needs psutil."""
    import psutil

    python = os.path.realpath(sys.executable)
    chain = []
    for parent in psutil.Process().parents():
        try:
            if os.path.realpath(parent.exe()) != python:
                break
        except psutil.Error:
            break
        chain.append(parent)
    return chain


def watch_launcher(on_exit: Callable[[int], None], interval_s: float = 1.0) -> threading.Thread | None:
    """Call ``on_exit(pid)`` once, from a daemon thread, when a launcher process above this one exits."""
    try:
        chain = launcher_processes()
    except Exception:  # no psutil, or /proc unreadable: nothing to watch
        return None
    if not chain:
        return None

    def watch() -> None:
        stopped = threading.Event()
        while not stopped.wait(interval_s):
            for process in chain:
                if not process.is_running():  # psutil also catches a reused pid
                    on_exit(process.pid)
                    return

    thread = threading.Thread(target=watch, name="videogen-launcher-watch", daemon=True)
    thread.start()
    return thread


def teardown_distributed(info: DistInfo | None = None, wait_for_others: bool = True) -> None:
    """Barrier (unless ``wait_for_others=False``), destroy the process group, remove the variables we set.

    Through DeepSpeed's ``destroy_process_group`` when DeepSpeed is in use: it also drops its cached
    groups, so a later run in the same process (tests, notebooks) starts clean.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        try:
            if wait_for_others:
                torch_dist.barrier()
        finally:
            ds_comm = sys.modules.get("deepspeed.comm")
            if ds_comm is not None and ds_comm.is_initialized():
                ds_comm.destroy_process_group()
            else:
                torch_dist.destroy_process_group()
    for name in info.filled_env if info is not None else ():
        os.environ.pop(name, None)


@contextmanager
def distributed_session() -> Iterator[DistInfo]:
    """``with distributed_session() as dist:`` -- setup, then a clean teardown however the block ends
    (after an error without the final barrier: the other ranks may never get there)."""
    info = setup_distributed()
    try:
        yield info
    except BaseException:
        teardown_distributed(info, wait_for_others=False)
        raise
    teardown_distributed(info)


# ----------------------------------------------------------------------------- collectives


ONE_OFF_WAIT = datetime.timedelta(days=7)
"""How long the other ranks wait for rank 0's one-off work (:func:`run_on_main`)."""


def run_on_main(work: Callable[[], None], what: str) -> None:
    """Run ``work`` on rank 0 while every other rank waits for it, however long it takes; then raise on
    every rank if it failed (rank 0 its own error, the others a ``UserError`` naming ``what``).

    The wait is a collective on a gloo group of its own with a :data:`ONE_OFF_WAIT` timeout: on the
    default group (NCCL's 30 minutes, or a launcher's setting) the waiting ranks would abort while rank
    0 still builds a large token cache. In a single process this is just ``work()``.
    """
    from videogen.errors import UserError

    several = world_size() > 1
    group = torch_dist.new_group(backend="gloo", timeout=ONE_OFF_WAIT) if several else None
    error: BaseException | None = None
    if not several or torch_dist.get_rank() == 0:
        try:
            work()
        except BaseException as e:  # re-raised below, after the other ranks heard of it
            error = e
    if several:
        failed = torch.tensor([1.0 if error is not None else 0.0])
        torch_dist.all_reduce(failed, op=torch_dist.ReduceOp.MAX, group=group)
        torch_dist.destroy_process_group(group)
        if error is None and failed.item() > 0:
            raise UserError(f"rank 0 could not {what} (see its message)")
    if error is not None:
        raise error
