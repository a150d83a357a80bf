"""Which torch device a command runs on: ``auto`` or a name, checked against this machine."""

from __future__ import annotations

import torch

from videogen.errors import UserError


def pick_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"auto"`` -> CUDA when available, else CPU; a named device must exist on this machine.

    A name torch does not know (``foo``) or a device this machine lacks (``cuda`` without a usable GPU,
    ``cuda:3`` with two) is a :class:`UserError` saying so, before any weights are loaded.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        picked = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"device {str(device)!r} is unknown; use cpu, cuda or cuda:N (--device)") from None
    if picked.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device {str(device)!r} asked for, but this machine has no usable CUDA GPU (torch "
                f"{torch.__version__}); use --device cpu, or leave --device out"
            )
        if picked.index is not None and picked.index >= torch.cuda.device_count():
            raise UserError(
                f"device {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                "GPU(s); use cuda:0 .. cuda:N-1 or cpu"
            )
    elif picked.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(
                f"device {str(device)!r} asked for, but MPS is not available here; use --device cpu"
            )
    elif picked.type != "cpu":
        raise UserError(f"device {str(device)!r} is not supported; use cpu, cuda or cuda:N (--device)")
    return picked
