"""Strategy selection inside a campaign (`model: {kind: auto}`): a thin factory over the
selecting surrogate (`engine.select`) that builds its candidates from the pool's feature blocks.

For every feature block of the pool (`Pool.feature_kinds`, e.g. physics, rdkit2d, morgan; the
whole matrix as one block `all` when the pool names none) it adds one candidate per applicable
family:

- ``rf``: a random forest on the block (any block);
- ``gp``: an exact GP with an ARD Matern-5/2 kernel (dense blocks up to `max_gp_columns` wide);
- ``tanimoto``: an exact GP with the Tanimoto (MinMax) kernel (blocks of non-negative integer
  counts, i.e. fingerprints);
- ``dkl``, ``deep_ensemble`` (opt-in): deep kernel learning and an MLP ensemble on dense blocks.

Which blocks are counts is read from the measured rows' features at the first fit, never from
block names, so the engine needs no chemistry. The candidates are then chosen among by a
cross-validated `criterion` on the measured points only, re-evaluated in each warm-up fit and every
`cv_every` fits after (see `engine.select`): ``cv_spearman`` (default), the k-fold rank correlation;
``cv_top``, the k-fold recall of the measured top `top_fraction`; ``cv_blend``, their mean. With
`ensemble: k` the mixture of the k best candidates is scored too and predicts when it scores higher.
Every choice and score goes to the run store as the round's record, and the report draws them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..engine.errors import SpecError
from ..engine.registry import register_model
from ..engine.select import SelectSurrogate
from .base import check_options

Family = Literal["rf", "gp", "tanimoto", "dkl", "deep_ensemble"]
WIDE_BLOCK = 256
"""Blocks wider than this many columns get a random forest that tries a fifth of them per split."""


class AutoOptions(BaseModel):
    """Options of `model: {kind: auto}`."""

    model_config = ConfigDict(extra="forbid")
    families: list[Family] = Field(["rf", "gp", "tanimoto"], min_length=1, description="surrogate families to try on each block")
    blocks: list[str] | None = Field(None, description="feature blocks to try (default: every block of the pool)")
    max_gp_columns: int = Field(128, ge=1, description="dense blocks wider than this get no ARD GP (nor DKL)")
    cv_folds: int = Field(3, ge=2, description="folds of the cross-validation on the measured points")
    cv_every: int = Field(5, ge=1, description="after warm-up, cross-validate every candidate every this many fits")
    warmup: int = Field(1, ge=1, description="first fits in which every candidate is cross-validated")
    criterion: Literal["cv_spearman", "cv_top", "cv_blend"] = Field(
        "cv_spearman", description="cross-validated score that picks the candidate (see engine.select)"
    )
    top_fraction: float = Field(0.1, gt=0, le=0.5, description="cv_top, cv_blend: the measured top fraction to recall")
    ensemble: int = Field(1, ge=1, description="predict with the mixture of this many best candidates when it "
                       "cross-validates better than the best alone (1: the best alone)")
    epsilon: float = Field(0.0, ge=0, le=1, description="probability of trying a random candidate instead of the best")
    gp_iters: int = Field(30, ge=1, description="Adam steps of a fresh GP fit (cross-validation copies included)")
    seed: int = Field(0, description="seeds the folds, the forests and the networks")


def _is_counts(block: np.ndarray) -> bool:
    """Whether every value of a (n, d) block is a non-negative integer (a count fingerprint)."""
    return bool(block.size) and bool((block >= 0).all()) and bool((block == np.round(block)).all())


def candidate_sections(
    blocks: dict[str, slice | None], counts: dict[str, bool], families: list[str], max_gp_columns: int,
    widths: dict[str, int], gp_iters: int,
) -> dict[str, dict[str, Any]]:
    """name -> model section for every (family, block) pair that applies, e.g. `rf:morgan`."""
    sections: dict[str, dict[str, Any]] = {}
    for block, columns in blocks.items():
        column = {"columns": block} if columns is not None else {}
        dense_ok = not counts[block] and widths[block] <= max_gp_columns
        for family in families:
            if family == "rf":
                wide = {"max_features": 0.2} if widths[block] > WIDE_BLOCK else {}
                sections[f"rf:{block}"] = {"kind": "rf", **column, **wide}
            elif family == "gp" and dense_ok:
                sections[f"gp:{block}"] = {"kind": "gp", "kernel": "matern", "fit_iters": gp_iters, **column}
            elif family == "tanimoto" and counts[block]:
                sections[f"tanimoto:{block}"] = {"kind": "gp", "kernel": "tanimoto", "fit_iters": gp_iters, **column}
            elif family in ("dkl", "deep_ensemble") and dense_ok:
                sections[f"{family}:{block}"] = {"kind": family, **column}
    return sections


@register_model("auto", AutoOptions)
class AutoSurrogate(SelectSurrogate):
    """Chooses feature block x surrogate by a cross-validated criterion on measured data.

    Options: families (default rf, gp, tanimoto), blocks (default all), max_gp_columns (128),
    cv_folds (3), cv_every (5), warmup (1), criterion (cv_spearman), top_fraction (0.1),
    ensemble (1: the best candidate alone; k: the mixture of the k best when it cross-validates
    better, see `engine.select`), epsilon (0), gp_iters (30), seed.
    """

    def __init__(
        self,
        families: list[str] = ("rf", "gp", "tanimoto"),
        blocks: list[str] | None = None,
        max_gp_columns: int = 128,
        cv_folds: int = 3,
        cv_every: int = 5,
        warmup: int = 1,
        criterion: str = "cv_spearman",
        top_fraction: float = 0.1,
        ensemble: int = 1,
        epsilon: float = 0.0,
        gp_iters: int = 30,
        seed: int = 0,
    ) -> None:
        options = check_options(AutoOptions, locals())
        self.auto_options = options
        vars(self).update(policy="epsilon_greedy", epsilon=options["epsilon"], temperature=1.0, reward=options["criterion"],
                          warmup=options["warmup"], cv_folds=options["cv_folds"], cv_every=options["cv_every"],
                          top_fraction=options["top_fraction"], ensemble=options["ensemble"], seed=options["seed"])  # fmt: skip
        self._set_candidates({})
        self._pool_blocks: dict[str, slice] = {}

    def use_feature_blocks(self, feature_kinds: dict[str, slice]) -> None:
        """Remember the pool's feature blocks; candidates are built at the first fit."""
        self._pool_blocks = dict(feature_kinds)
        super().use_feature_blocks(feature_kinds)

    def _blocks(self) -> dict[str, slice | None]:
        """The blocks to try: name -> slice (None: the whole matrix as block `all`)."""
        available: dict[str, slice | None] = dict(self._pool_blocks) or {"all": None}
        wanted = self.auto_options["blocks"]
        if wanted is None:
            return available
        unknown = [b for b in wanted if b not in available]
        if unknown:
            raise SpecError(f"model.blocks: the pool has no feature block {unknown[0]!r}; available: {', '.join(available)}")
        return {b: available[b] for b in wanted}

    def _build_candidates(self, X: np.ndarray) -> None:
        blocks = self._blocks()
        parts = {b: X if s is None else X[:, s] for b, s in blocks.items()}
        sections = candidate_sections(
            blocks, {b: _is_counts(v) for b, v in parts.items()}, self.auto_options["families"],
            self.auto_options["max_gp_columns"], {b: v.shape[1] for b, v in parts.items()}, self.auto_options["gp_iters"],
        )  # fmt: skip
        if not sections:
            raise SpecError("model: no candidate applies to the pool's feature blocks; add a family (rf applies to any block)")
        self._set_candidates(sections)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "AutoSurrogate":
        """Build the candidates on the first fit, then fit as the selecting surrogate."""
        if not self.names:
            self._build_candidates(np.asarray(X))
        return super().fit(X, y)

    def set_state(self, state: bytes) -> None:
        """Rebuild the candidates recorded in the state, then restore it (resumed runs)."""
        sections = json.loads(state).get("candidates", {})
        if sections and list(sections) != self.names:
            self._set_candidates(sections)
        super().set_state(state)
