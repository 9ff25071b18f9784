"""On-disk cache of computed arrays (parsed datasets, features), keyed by their settings.

An entry is a directory named by a hash of a settings dict (what was computed, from which data
version, by which code version) holding one `.npy` file per named array and the settings as
`key.json` for people reading the cache. Entries are built in a temporary directory and renamed
into place, so a killed build never leaves a half-written entry behind. The cache lives in
`$ACTIVESCOPE_CACHE` when set, else in the platform's user cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import platformdirs

CACHE_FORMAT = 1
"""Bumped when the entry layout changes; part of every key so old entries are never misread."""

_SINGLE = "array"


def cache_dir() -> Path:
    """The cache root: `$ACTIVESCOPE_CACHE` if set, else the user cache dir for activescope."""
    root = os.environ.get("ACTIVESCOPE_CACHE") or platformdirs.user_cache_dir("activescope")
    return Path(root)


def cache_key(settings: Mapping[str, Any]) -> str:
    """Stable 24-hex-digit hash of a JSON-serialisable settings mapping (key order ignored)."""
    blob = json.dumps({"cache_format": CACHE_FORMAT, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_arrays(
    key: Mapping[str, Any],
    build: Callable[[], Mapping[str, np.ndarray]],
    mmap: bool = False,
) -> dict[str, np.ndarray]:
    """Named arrays for `key`: loaded from the cache if present, else built, stored and returned.

    `build` returns a mapping of name -> array (numeric or fixed-width string dtypes; no objects).
    With `mmap=True` a cache hit returns read-only memory maps instead of loading into memory.
    """
    entry = cache_dir() / cache_key(key)
    if entry.is_dir():
        names = json.loads((entry / "key.json").read_text())["arrays"]
        return {name: np.load(entry / f"{name}.npy", mmap_mode="r" if mmap else None) for name in names}
    arrays = {name: np.asarray(value) for name, value in build().items()}
    _write_entry(entry, key, arrays)
    return arrays


def cached_array(key: Mapping[str, Any], build: Callable[[], np.ndarray], mmap: bool = False) -> np.ndarray:
    """One array for `key`, from the cache or built by `build()` and stored (see `cached_arrays`)."""
    return cached_arrays(key, lambda: {_SINGLE: build()}, mmap=mmap)[_SINGLE]


def _write_entry(entry: Path, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write the arrays into a temporary sibling directory, then rename it to `entry` atomically."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        for name, value in arrays.items():
            if value.dtype == object:
                raise TypeError(f"cannot cache object array {name!r}; use a fixed-width dtype")
            np.save(tmp / f"{name}.npy", value, allow_pickle=False)
        meta = {"arrays": list(arrays), "settings": dict(key)}
        (tmp / "key.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
        os.rename(tmp, entry)
    except OSError:
        if not entry.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
