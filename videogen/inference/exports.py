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


def check_pair(tokenizer, transformer, tokenizer_name: str, transformer_name: str):
    """The transformer's :class:`~videogen.export.TransformerExportInfo`, once the two models belong together.

    :class:`UserError` (one line, naming both) when the transformer carries no record of its training
    (an export from before ``format_version`` 2, or a model built in Python without one), when the
    codebooks differ, or when the tokenizer's weights are not those the transformer was trained on
    (:func:`~videogen.export.state_dict_sha256` against the recorded hash).
    """
    from videogen.config_loader import to_dict
    from videogen.export import state_dict_sha256

    info = transformer.export_info
    if info is None:
        raise UserError(
            f"transformer {transformer_name} does not say what it was trained on (tasks, tokenizer, window): "
            "an export made before they were recorded, or a model without export_info; export it again "
            "with this videogen (run or resume its training: `./run.sh train transformer`) or pass another "
            "--transformer"
        )
    if tokenizer.codebook_size != transformer.config.codebook_size:
        raise UserError(
            f"tokenizer {tokenizer_name} has {tokenizer.codebook_size} codes but transformer "
            f"{transformer_name} was trained on {transformer.config.codebook_size}; pass the tokenizer the "
            "transformer was trained with"
        )
    recorded = info.tokenizer
    config = to_dict(tokenizer.config)
    differ = [key for key, value in recorded.config.items() if key in config and config[key] != value]
    if differ:
        key = differ[0]
        raise UserError(
            f"transformer {transformer_name} was trained on another tokenizer than tokenizer {tokenizer_name}: "
            f"its config has {key} = {recorded.config[key]!r}, this one {config[key]!r}; pass the tokenizer "
            "it was trained on (--tokenizer)"
        )
    found = state_dict_sha256(tokenizer.state_dict())
    if found != recorded.weights_sha256:
        where = f", exported at '{recorded.trained_from}' then" if recorded.trained_from else ""
        raise UserError(
            f"transformer {transformer_name} was trained on another tokenizer ({recorded.describe()}{where}) "
            f"than tokenizer {tokenizer_name} (weights sha256 {found[:12]}); pass the tokenizer it was "
            "trained on (--tokenizer)"
        )
    return info
