"""Run a launcher command so that stopping it stops its training processes, and nothing outlives it.

    python -m videogen.launcher deepspeed --num_gpus 2 --no_local_rank --module videogen train ...

``run.sh train ... --num-gpus N`` goes through here. The ``deepspeed`` runner does not forward SIGTERM
on a single node: killed, it leaves its per-node launcher and every rank running (and its per-node
launcher, signalled itself, SIGKILLs ranks that take more than 30 s to save). So this process starts
the launcher in a session of its own (a terminal's Ctrl-C reaches only this process) and, on SIGTERM
or SIGINT, sends each training process one SIGTERM: every rank writes a checkpoint at the end of its
step and exits 0, the launcher follows, and this process exits with the launcher's code. A second
signal kills the whole session at once. Whatever is left of the session when the launcher has exited
is stopped too (SIGTERM, then SIGKILL after ``LEFTOVER_GRACE_S``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

NODE_LAUNCHER = "deepspeed.launcher.launch"  # the runner's per-node process; its children are the ranks
LEFTOVER_GRACE_S = 30.0


def training_processes(root_pid: int) -> list:
    """The ranks under ``root_pid``: children of DeepSpeed's per-node launcher (empty if none is found)."""
    try:
        import psutil  # a DeepSpeed dependency
    except ImportError:
        return []

    try:
        tree = psutil.Process(root_pid).children(recursive=True)
    except psutil.Error:
        return []
    launchers = set()
    for process in tree:
        try:
            if NODE_LAUNCHER in process.cmdline():
                launchers.add(process.pid)
        except psutil.Error:
            pass
    ranks = []
    for process in tree:
        try:
            if process.ppid() in launchers:
                ranks.append(process)
        except psutil.Error:
            pass
    return ranks


def stop_session(pgid: int, grace_s: float = LEFTOVER_GRACE_S) -> bool:
    """SIGTERM every process left in group ``pgid``, SIGKILL them after ``grace_s``; whether any was left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return True
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return True


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python -m videogen.launcher LAUNCHER [ARGS ...]", file=sys.stderr)
        return 0 if argv else 2
    try:
        child = subprocess.Popen(argv, start_new_session=True)
    except OSError as e:
        print(f"error: cannot start the launcher '{argv[0]}' ({e.strerror or e})", file=sys.stderr)
        return 2
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) > 1:
            print(
                f"[videogen] received {name} again: killing the training processes",
                file=sys.stderr,
                flush=True,
            )
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return
        ranks = training_processes(child.pid)
        print(
            f"[videogen] received {name}: asking the {len(ranks) or 'launcher'}"
            f"{' training processes' if ranks else ''} to save a checkpoint and stop "
            "(send it again to kill them)",
            file=sys.stderr,
            flush=True,
        )
        for process in ranks or [child]:
            try:
                process.send_signal(signal.SIGTERM)
            except Exception:  # gone meanwhile
                pass

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    code = child.wait()
    if stop_session(child.pid):
        print("[videogen] stopped the processes the launcher left behind", file=sys.stderr, flush=True)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
