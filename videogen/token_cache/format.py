"""On-disk format of the token cache: layout, shard files, integrity checks, the index.

Layout (``OUT`` = the ``./run.sh tokenize --out`` folder)::

    OUT/settings.json            what the cache is made from (written first; a rerun resumes only
                                 when it matches, see ``prepare_out``)
    OUT/masks/<task>.npy         bool (T', H', W'): the task's latent condition mask (same for every clip)
    OUT/shards/00000/            one folder per shard, renamed into place only when complete
        tokens.npy               (n, T', H', W') uint16 (int32 when codebook_size > 65536): target tokens
        cond_<name>.npy          (n, T', H', W') same dtype: condition tokens, one file per distinct
                                 condition video (tasks with the same one, e.g. FP and CFP, share it)
        labels.npy               (n,) int64 class index, -1 = none
        rows.npy windows.npy     (n,) int64: manifest row (line order, blank lines skipped), window number
        flips.npy                (n,) uint8: 1 = the horizontally flipped clip
        meta.json                settings fingerprint, units covered, item count, failures,
                                 size and crc32 of every file
    OUT/index.json               written last, atomically: settings + shards + classes + failures

Every ``.npy`` is a standard numpy file (``np.load(path, mmap_mode="r")`` maps it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from videogen import atomic
from videogen.config_loader import from_dict, read_yaml, to_dict
from videogen.errors import UserError
from videogen.tokenizer.config import TokenizerConfig

FORMAT = "videogen-token-cache"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SETTINGS_FILE = "settings.json"
SHARDS_DIR = "shards"
MASKS_DIR = "masks"
META_FILE = "meta.json"
WEIGHTS_FILE = "model.safetensors"
NOT_FINGERPRINTED = ("tokenizer.dir", "data.manifest", "fingerprint")  # locations, not contents


class TokenCacheError(UserError):
    """A folder is not a token cache, is incomplete or damaged, or was made with another tokenizer."""


# ----------------------------------------------------------------------------- small helpers


def token_dtype(codebook_size: int) -> np.dtype:
    """Storage dtype of token ids: uint16 up to 65536 codes, else int32."""
    return np.dtype(np.uint16) if codebook_size <= 2**16 else np.dtype(np.int32)


def tokenizer_config_hash(tokenizer: Any) -> str:
    """sha256 (16 hex digits) of a tokenizer config: of a ``VideoTokenizer``, a ``TokenizerConfig`` or an
    export folder (its ``config.yaml``)."""
    if isinstance(tokenizer, (str, Path)):
        data = read_yaml(Path(tokenizer) / "config.yaml")
        data.pop("kind", None)
        tokenizer = from_dict(TokenizerConfig, data)
    config = getattr(tokenizer, "config", tokenizer)
    return hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_crc32(path: str | Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def flatten(data: Mapping, prefix: str = "") -> dict:
    """Nested dict -> {"a.b": value}."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def fingerprint(settings: Mapping) -> str:
    """Hash of the settings that decide a cache's contents (not where its tokenizer or manifest live)."""
    flat = {k: v for k, v in flatten(settings).items() if k not in NOT_FINGERPRINTED}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- shards


def shard_name(shard: int) -> str:
    return f"{shard:05d}"


def commit_shard(tmp: Path, final: Path) -> None:
    """The one step that makes a shard complete: rename its finished temporary folder into place."""
    os.replace(tmp, final)


def write_shard(shards_dir: Path, shard: int, arrays: Mapping[str, np.ndarray], meta: dict) -> dict:
    """Write ``arrays`` (field -> (n, ...)) as ``.npy`` memmaps into a temporary folder, add ``meta.json``
    (``meta`` + size and crc32 per file), then rename the folder into place. Returns the meta."""
    final = shards_dir / shard_name(shard)
    tmp = shards_dir / f".{shard_name(shard)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = {}
        for name, data in arrays.items():
            path = tmp / f"{name}.npy"
            mapped = np.lib.format.open_memmap(path, mode="w+", dtype=data.dtype, shape=data.shape)
            mapped[...] = data
            mapped.flush()
            del mapped
            atomic.fsync(path)
            files[path.name] = {"bytes": path.stat().st_size, "crc32": file_crc32(path)}
        meta = {**meta, "files": files}
        atomic.write_json(tmp / META_FILE, meta, durable=True)
        shutil.rmtree(final, ignore_errors=True)
        commit_shard(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def complete_shard(shards_dir: Path, shard: int, expected: Mapping[str, Any]) -> dict | None:
    """The shard's meta if it is complete and intact (every file of its recorded size and crc32) and
    its meta holds the ``expected`` values (fingerprint, units covered); else None."""
    folder = shards_dir / shard_name(shard)
    meta = read_json(folder / META_FILE)
    if meta is None or any(meta.get(k) != v for k, v in expected.items()):
        return None
    for name, info in meta.get("files", {}).items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != info["bytes"] or file_crc32(path) != info["crc32"]:
            return None
    return meta


# ----------------------------------------------------------------------------- the folder


def prepare_out(out: Path, settings: dict, overwrite: bool) -> None:
    """Create ``out``, or check that it holds a cache with the same settings (``overwrite``: replace it,
    deleting only the cache's own files). Removes temporary shard folders of interrupted runs."""
    out.mkdir(parents=True, exist_ok=True)
    existing = read_json(out / SETTINGS_FILE)
    if existing is None and any(out.iterdir()):
        raise UserError(f"'{out}' is not empty and holds no token cache; pass a new or empty folder as --out")
    if existing is not None and existing.get("fingerprint") != settings["fingerprint"]:
        if not overwrite:
            old, new = flatten(existing), flatten(settings)
            keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
            keys = [k for k in keys if k not in NOT_FINGERPRINTED]
            raise UserError(
                f"'{out}' holds a token cache made with other settings (differing: {', '.join(keys[:6])}); "
                "pass a new --out, or --overwrite to replace it"
            )
        for name in (INDEX_FILE, SETTINGS_FILE):
            (out / name).unlink(missing_ok=True)
        for name in (SHARDS_DIR, MASKS_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
    (out / SHARDS_DIR).mkdir(exist_ok=True)
    (out / MASKS_DIR).mkdir(exist_ok=True)
    for folder in (out / SHARDS_DIR, out / MASKS_DIR, out):  # interrupted writes are never complete
        for leftover in folder.glob(".*.tmp-*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    atomic.write_json(out / SETTINGS_FILE, settings, durable=True)


def read_index(cache_dir: str | Path) -> dict:
    """``index.json`` of a complete cache (each listed file present with its size), else
    :class:`TokenCacheError` with a one-line message naming the fix."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise TokenCacheError(
            f"token cache '{cache_dir}' does not exist; make one with `./run.sh tokenize --out {cache_dir}`"
        )
    index = read_json(cache_dir / INDEX_FILE)
    if index is None or index.get("format") != FORMAT:
        if (cache_dir / SETTINGS_FILE).is_file():
            raise TokenCacheError(
                f"token cache '{cache_dir}' is incomplete (no {INDEX_FILE}: its tokenize run did not finish); "
                f"rerun the same `./run.sh tokenize ... --out {cache_dir}` to resume it"
            )
        raise TokenCacheError(
            f"'{cache_dir}' is not a token cache (no valid {INDEX_FILE}); make one with "
            f"`./run.sh tokenize --tokenizer DIR --data MANIFEST --out {cache_dir}`"
        )
    if index.get("version") != FORMAT_VERSION:
        raise TokenCacheError(
            f"token cache '{cache_dir}' has format version {index.get('version')}, this videogen reads "
            f"{FORMAT_VERSION}; remake it with `./run.sh tokenize ... --out NEW_DIR`"
        )
    for shard in index["shards"]:
        for name, info in shard["files"].items():
            path = cache_dir / SHARDS_DIR / shard["name"] / name
            size = path.stat().st_size if path.is_file() else None
            if size != info["bytes"]:
                state = "is missing" if size is None else f"has {size} bytes, not {info['bytes']}"
                raise TokenCacheError(
                    f"token cache '{cache_dir}' is damaged: '{path.relative_to(cache_dir)}' {state}; rerun "
                    f"`./run.sh tokenize ... --out {cache_dir}` with the same options to rebuild that shard"
                )
    return index


def check_tokenizer(index: Mapping, tokenizer: Any, cache_dir: str | Path) -> None:
    """Refuse a tokenizer (``VideoTokenizer``, ``TokenizerConfig`` or export folder) whose config differs
    from the one the cache was made with; for a folder the weights file (sha256) is compared too."""
    made = index["tokenizer"]
    given = tokenizer_config_hash(tokenizer)
    fix = "remake the cache with this tokenizer (`./run.sh tokenize --tokenizer DIR --out NEW_DIR`)"
    if given != made["config_hash"]:
        raise TokenCacheError(
            f"token cache '{cache_dir}' was made with tokenizer config {made['config_hash']} "
            f"(from '{made['dir']}'), not the given tokenizer's {given}; {fix}"
        )
    if isinstance(tokenizer, (str, Path)):
        weights = Path(tokenizer) / WEIGHTS_FILE
        if weights.is_file() and file_sha256(weights) != made["weights_sha256"]:
            raise TokenCacheError(
                f"token cache '{cache_dir}' was made with other weights than '{weights}' "
                f"(same config {given}); {fix}"
            )
