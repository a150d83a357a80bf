"""Where the CLI finds models: ``--tokenizer`` / ``--transformer`` or the default training runs' exports.

``./run.sh train tokenizer`` and ``./run.sh train transformer`` export EMA weights to
``runs/tokenizer-default/export/`` and ``runs/transformer-default/export/`` (relative to the current
folder; ``run.sh`` runs from the repository root). A folder that holds several exports in
sub-folders (each with ``config.yaml``) resolves to the most recently written one. Its weights file
is checked to be readable (:func:`check_weights`) before any model is built.
"""

from __future__ import annotations

from pathlib import Path

from videogen.errors import UserError

DEFAULT_EXPORTS = {
    "tokenizer": Path("runs/tokenizer-default/export"),
    "transformer": Path("runs/transformer-default/export"),
}
TRAIN_COMMANDS = {"tokenizer": "./run.sh train tokenizer", "transformer": "./run.sh train transformer"}
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"


def check_weights(folder: str | Path, kind: str) -> None:
    """Raise :class:`UserError` naming ``folder/model.safetensors`` if it cannot be read or is damaged
    (truncated, not safetensors). A missing file is left to the loader, which says what is missing."""
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        return
    fix = f"export it again (`{TRAIN_COMMANDS.get(kind, './run.sh train')}`) or pass another --{kind}"
    try:
        with open(weights, "rb") as f:
            f.read(8)
    except OSError as e:
        raise UserError(
            f"{kind} weights '{weights}' cannot be read ({e.strerror}); check the file's permissions"
        ) from None
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except Exception as e:  # SafetensorError and friends: the header or the size does not add up
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"{kind} weights '{weights}' are damaged ({reason}); {fix}") from None


def newest_export(folder: Path) -> Path | None:
    """``folder`` if it holds ``config.yaml``, else its most recently written sub-folder that does."""
    if (folder / CONFIG_FILE).is_file():
        return folder
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.iterdir() if (p / CONFIG_FILE).is_file()]
    return max(candidates, key=lambda p: (p / CONFIG_FILE).stat().st_mtime) if candidates else None


def resolve_export(kind: str, given: str | Path | None) -> Path:
    """The export folder for ``kind`` ("tokenizer" | "transformer"): ``given``, or the default run's.

    A given path must exist (its kind is checked when loading); a missing default is a
    :class:`UserError` naming the command that makes it.
    """
    if given is not None:
        path = Path(given)
        if not path.exists():
            raise UserError(
                f"{kind} checkpoint '{path}' does not exist; pass an export folder (config.yaml + model.safetensors)"
            )
        found = newest_export(path) or path
    else:
        found = newest_export(DEFAULT_EXPORTS[kind])
        if found is None:
            raise UserError(
                f"no {kind} found at '{DEFAULT_EXPORTS[kind]}/'; train one with `{TRAIN_COMMANDS[kind]}` "
                f"or pass --{kind} DIR"
            )
    check_weights(found, kind)
    return found
