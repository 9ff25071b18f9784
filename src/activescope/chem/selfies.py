"""SELFIES one-hot featurizer (``features: [selfies]``) and SELFIES decoding helpers.

Each SMILES is encoded to SELFIES (the ``selfies`` package), split into tokens and padded with
``[nop]`` to a fixed length; the block is the one-hot of every position over a fixed alphabet,
uint8 in the cache and float32 in the pool, `max_length x len(alphabet)` columns named
``<position>:<token>`` (e.g. ``03:[=C]``), position-major. The alphabet (``[nop]`` first, the
other tokens sorted) and the length come from the pool unless given, so a model trained on one
pool can featurize another with the same columns.

SMILES that SELFIES cannot encode (valences beyond its semantic constraints, unkekulizable
aromatic rings, unsupported syntax), or whose SELFIES is longer than a given ``max_length`` or
uses a token outside a given ``alphabet``, are **skipped**, not zero-filled: an all-zero row
would be a real point of the one-hot space (and of any latent map) that is no molecule, and
every other featurizer drops what it cannot handle the same way. They are reported in one log
warning with their count, the reason and the first examples.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import selfies as sf
from pydantic import BaseModel, ConfigDict, Field
from rdkit import Chem, RDLogger

PAD = "[nop]"
"""SELFIES' no-operation symbol, used as padding; always index 0 of the alphabet."""
log = logging.getLogger("activescope.chem")


class SelfiesFeatures(BaseModel):
    """One-hot SELFIES tokens (fixed alphabet and length, `[nop]`-padded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["selfies"] = Field("selfies", description="one-hot SELFIES tokens")
    max_length: int | None = Field(
        None, ge=1, le=256, description="tokens per molecule (default: the pool's longest SELFIES; longer ones are skipped)")
    alphabet: tuple[str, ...] | None = Field(
        None, min_length=1, description="token alphabet (default: the pool's tokens; molecules with other tokens are skipped)")


def encode_chunk(smiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SELFIES strings (empty where encoding failed) and a success mask for a chunk of SMILES."""
    out = np.full(len(smiles), "", dtype=object)
    ok = np.zeros(len(smiles), bool)
    for row, text in enumerate(smiles):
        try:
            out[row] = sf.encoder(str(text), strict=True)
            ok[row] = bool(out[row])
        except sf.EncoderError:
            continue
    return out.astype(str), ok


def one_hot_block(encoded: np.ndarray, encodable: np.ndarray, smiles: np.ndarray, config: SelfiesFeatures) -> dict[str, np.ndarray]:
    """The cached block: `values` (n, max_length * len(alphabet)) uint8 one-hot, `valid` mask,
    column `names`; molecules skipped (see the module doc) are reported in one warning."""
    tokens = [list(sf.split_selfies(text)) if ok else [] for text, ok in zip(encoded, encodable)]
    lengths = np.array([len(t) for t in tokens])
    alphabet = _alphabet(tokens, encodable, config.alphabet)
    length = config.max_length or int(lengths[encodable].max(initial=1))
    index = {token: i for i, token in enumerate(alphabet)}
    too_long = encodable & (lengths > length)
    known = np.array([all(t in index for t in row) for row in tokens])
    valid = encodable & ~too_long & known
    _report(smiles, encodable, too_long, encodable & ~too_long & ~known, length)
    ids = np.zeros((len(tokens), length), np.int64)
    rows = np.flatnonzero(valid)
    flat = [index[t] for r in rows for t in tokens[r]]
    positions = np.concatenate([np.arange(lengths[r]) for r in rows]) if rows.size else np.zeros(0, np.int64)
    ids[np.repeat(rows, lengths[rows]), positions] = flat
    values = np.zeros((len(tokens), length, len(alphabet)), np.uint8)
    np.put_along_axis(values, ids[..., None], 1, axis=2)
    values[~valid] = 0
    names = [f"{position:02d}:{token}" for position in range(length) for token in alphabet]
    return {"values": values.reshape(len(tokens), -1), "valid": valid, "names": np.array(names)}


def vocabulary(names: Sequence[str]) -> tuple[list[str], int]:
    """The alphabet and length of a ``selfies`` block from its column names (with or without
    the ``selfies:`` prefix the pool adds)."""
    split = [name.removeprefix("selfies:").split(":", 1) for name in names]
    length = int(split[-1][0]) + 1
    alphabet = [token for position, token in split if int(position) == 0]
    if len(alphabet) * length != len(split):
        raise ValueError(f"{len(split)} columns are not {length} positions x {len(alphabet)} tokens")
    return alphabet, length


def tokens_to_smiles(indices: np.ndarray, alphabet: Sequence[str]) -> list[str]:
    """SMILES decoded from (n, length) token indices (``[nop]`` is skipped; "" where SELFIES
    decoding fails)."""
    symbols = np.asarray(alphabet, dtype=object)[np.asarray(indices)]
    out = []
    for row in symbols:
        try:
            out.append(sf.decoder("".join(row)) or "")
        except sf.DecoderError:
            out.append("")
    return out


def canonical(smiles: Sequence[str]) -> list[str | None]:
    """RDKit canonical SMILES, None where a string does not parse (RDKit's messages muted)."""
    RDLogger.DisableLog("rdApp.*")
    try:
        mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
    finally:
        RDLogger.EnableLog("rdApp.*")
    return [Chem.MolToSmiles(m) if m is not None and m.GetNumAtoms() else None for m in mols]


def sample_quality(decoded: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """Validity (RDKit parses it, at least one atom), uniqueness (distinct among the valid) and
    novelty (valid and distinct, not in `reference`, canonical SMILES) of decoded molecules,
    as fractions of all decoded."""
    forms = canonical(decoded)
    valid = [f for f in forms if f is not None]
    unique = set(valid)
    known = {f for f in canonical(reference) if f is not None}
    n = max(len(forms), 1)
    return {"validity": len(valid) / n, "uniqueness": len(unique) / max(len(valid), 1), "novelty": len(unique - known) / n}


def _alphabet(tokens: list[list[str]], encodable: np.ndarray, given: tuple[str, ...] | None) -> list[str]:
    if given is not None:
        return [PAD, *[t for t in given if t != PAD]]
    seen = set().union(*(set(row) for row, ok in zip(tokens, encodable) if ok)) - {PAD}
    return [PAD, *sorted(seen)]


def _report(smiles: np.ndarray, encodable: np.ndarray, too_long: np.ndarray, unknown: np.ndarray, length: int) -> None:
    reasons = [(~encodable, "SELFIES cannot encode"), (too_long, f"longer than max_length {length}"),
               (unknown, "tokens outside the alphabet")]
    parts = [f"{int(mask.sum())} {why} (e.g. {', '.join(map(str, smiles[mask][:3]))})" for mask, why in reasons if mask.any()]
    if parts:
        log.warning("selfies: skipped %s", "; ".join(parts))
