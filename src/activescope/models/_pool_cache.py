"""What a surrogate derives from the pool's feature block once and reuses every round.

A campaign predicts the same pool matrix every round and never writes it, so representations of
it that cost a pass over every value (the Tanimoto GP's sparse count levels, the forest's sparse
rows) are built at the first prediction and kept (a few entries). An entry is keyed on its kind and the
block's address, shape and strides, and holds a weak reference to the array owning the memory:
once that array is freed, its reference is dead and nothing at its address is served from the
cache.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

import numpy as np

POOL_CACHE_MIN_ROWS = 4096
"""Blocks with at least this many rows are cached; smaller ones, such as cross-validation folds,
are cheap to recompute and would only evict the pool's entry."""

MAX_ENTRIES = 4
"""Entries kept (oldest dropped first): a few blocks of one pool, e.g. each candidate's of `auto`."""

Derived = TypeVar("Derived")
_ENTRIES: dict[tuple, tuple[weakref.ref, object]] = {}


def pool_cached(kind: str, block: np.ndarray, options: tuple, build: Callable[[np.ndarray], Derived]) -> Derived | None:
    """`build(block)`, kept under `kind` and reused while the same block of the same array comes
    back with the same `options`; None when the block has fewer than `POOL_CACHE_MIN_ROWS` rows
    or lives in memory that cannot be referenced weakly (the caller then works on the block
    directly). `build` may itself return None (the representation does not apply)."""
    if len(block) < POOL_CACHE_MIN_ROWS:
        return None
    owner = block if block.base is None else block.base
    key = (kind, block.__array_interface__["data"][0], block.shape, block.strides, options)
    entry = _ENTRIES.get(key)
    if entry is not None and entry[0]() is owner:
        return entry[1]
    try:
        reference = weakref.ref(owner)
    except TypeError:
        return None
    for stale in [k for k, (ref, _) in _ENTRIES.items() if ref() is None]:
        del _ENTRIES[stale]
    derived = build(block)
    _ENTRIES[key] = (reference, derived)
    while len(_ENTRIES) > MAX_ENTRIES:
        del _ENTRIES[next(iter(_ENTRIES))]
    return derived
