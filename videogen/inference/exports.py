"""Where the CLI finds models: ``--tokenizer`` / ``--transformer`` or the default training runs' exports.

``./run.sh train tokenizer`` and ``./run.sh train transformer`` export EMA weights to
``runs/tokenizer-default/export/`` and ``runs/transformer-default/export/`` (relative to the current
folder; ``run.sh`` runs from the repository root). A folder that holds several exports in
sub-folders (each with ``config.yaml``) resolves to the most recently written one.
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
        return newest_export(path) or path
    found = newest_export(DEFAULT_EXPORTS[kind])
    if found is None:
        raise UserError(
            f"no {kind} found at '{DEFAULT_EXPORTS[kind]}/'; train one with `{TRAIN_COMMANDS[kind]}` "
            f"or pass --{kind} DIR"
        )
    return found
