"""Errors that mean "the user gave something wrong": the CLI prints them as one line and exits 2.

Operating-system errors (a folder that is not writable, a path through a file, a full disk) are
bad input too: :func:`os_error_line` turns one into the same kind of line, naming the path.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input from a person (a missing file, an invalid option, a checkpoint of the wrong kind)."""


_FIXES = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the filesystem is read-only; choose another path",
    errno.ENOSPC: "the disk is full; free some space or choose another path",
    errno.EDQUOT: "the disk quota is used up; free some space or choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; give a file name",
    errno.EEXIST: "something is already there; choose another path",
}


def os_error_line(error: OSError) -> str:
    """``'runs/x': Permission denied; check its permissions or choose another path`` (no ``error:`` prefix)."""
    reason = error.strerror or str(error) or type(error).__name__
    fix = _FIXES.get(error.errno or -1, "check the path and the disk")
    if error.filename is None:
        return f"{reason}; {fix}"
    where = f"'{error.filename}'" + (f" -> '{error.filename2}'" if error.filename2 else "")
    return f"{where}: {reason}; {fix}"
