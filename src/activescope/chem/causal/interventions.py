"""Design by intervention: push the target above a threshold through its causes, then find real
molecules in a region of chemical space the model never saw.

In the fitted linear SEM (standardised variables z, adjacency B) the intervention do(z_j = v)
cuts j's incoming edges; the expected state is z = (I − B_j)⁻¹ u with B_j = B with row j zeroed
and u = v·e_j, so only j's descendants move: z = T[:, j]·v with T = (I − B)⁻¹. For each causal
feature with a non-zero total effect t_j on the target, the intervention value is the v that
puts the expected target at the threshold plus a margin, v = z*/t_j (clipped to ±max_shift
standard deviations). Each intervened descriptor vector is mapped to the design-region molecules
nearest to it (Euclidean distance over the causal features, z-scored with the learning subset's
statistics); proposals are taken round-robin over the interventions, strongest effect first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...engine.errors import DataError
from .data import CausalData, MoleculeSet
from .discovery import CausalGraph
from .spec import InterventionOptions

MIN_EFFECT = 0.02
"""Standardised total effects smaller than this are not used for design (no lever on the target)."""


@dataclass
class Design:
    """Interventions (one row per causal feature: effect, intervention value, predicted target)
    and the proposed design-region molecules with their true target and which intervention led
    to each."""

    interventions: pd.DataFrame
    proposals: pd.DataFrame


def intervention_table(graph: CausalGraph, options: InterventionOptions) -> tuple[pd.DataFrame, np.ndarray]:
    """Per causal feature: total effect on the target (standardised and in target units per
    descriptor unit), the intervention value (descriptor units) and the target it predicts.
    Also returns the intervened z-vectors over the features (one row per usable intervention)."""
    T = graph.total_effects()
    p = len(graph.names)
    effect = T[-1, :-1]
    goal_z = (options.threshold + options.margin - graph.mean[-1]) / graph.std[-1]
    usable = np.abs(effect) >= MIN_EFFECT
    shift = np.clip(np.divide(goal_z, effect, out=np.zeros_like(effect), where=usable), -options.max_shift, options.max_shift)
    predicted = graph.mean[-1] + graph.std[-1] * effect * shift
    table = pd.DataFrame({
        "feature": graph.names[:-1],
        "total_effect_std": effect,
        "total_effect": effect * graph.std[-1] / graph.std[:-1],
        "mean": graph.mean[:-1],
        "intervention_value": graph.mean[:-1] + shift * graph.std[:-1],
        "shift_sd": shift,
        "predicted_target": predicted,
        "reaches_threshold": predicted > options.threshold,
        "used": usable,
    }).sort_values("total_effect_std", key=np.abs, ascending=False, kind="stable").reset_index(drop=True)
    used = [graph.names.index(f) for f in table.loc[table["used"], "feature"]]
    vectors = T[: p - 1][:, used].T * shift[used][:, None]
    return table, vectors


def propose(graph: CausalGraph, design: MoleculeSet, columns: np.ndarray, options: InterventionOptions) -> Design:
    """Intervene on each causal feature and map the intervened vectors to the nearest design
    molecules. `columns`: positions of the graph's features in `design.X`."""
    if len(design) == 0:
        raise DataError("the design region is empty: lower data.max_heavy_atoms so larger molecules remain")
    table, vectors = intervention_table(graph, options)
    if not len(vectors):
        raise DataError("no causal feature has an effect on the target; nothing to intervene on")
    z = (design.X[:, columns] - graph.mean[:-1]) / graph.std[:-1]
    distance = np.linalg.norm(z[None, :, :] - vectors[:, None, :], axis=2)
    ranked = np.argsort(distance, axis=1, kind="stable")
    n = min(options.proposals, len(design))
    order = ranked.T.ravel()
    source = np.tile(np.arange(len(vectors)), ranked.shape[1])
    _, first = np.unique(order, return_index=True)
    keep = np.sort(first)[:n]
    rows, which = order[keep], source[keep]
    used = table.loc[table["used"], "feature"].to_numpy()
    proposals = pd.DataFrame({
        "id": design.ids[rows],
        "smiles": design.smiles[rows],
        "intervention": used[which],
        "distance": distance[which, rows],
        "true_target": design.y[rows],
    })
    return Design(table, proposals)


def success_rates(design: Design, data: CausalData, graph: CausalGraph, subset_rows: np.ndarray,
                  options: InterventionOptions, seed: int = 0) -> pd.DataFrame:
    """Fraction of proposals whose true target exceeds the threshold, for the causal design, for
    random picks from the design region (one seeded draw and the exact expectation), and for a
    random forest trained on the same subset and features that picks its top predictions (greedy).
    All get the same number of proposals."""
    from sklearn.ensemble import RandomForestRegressor

    columns = data.columns(graph.names[:-1])
    n = len(design.proposals)
    y = data.design.y
    forest = RandomForestRegressor(200, min_samples_leaf=2, random_state=seed, n_jobs=1)
    forest.fit(data.pool.X[subset_rows][:, columns], data.pool.y[subset_rows])
    greedy = np.argsort(-forest.predict(data.design.X[:, columns]), kind="stable")[:n]
    draw = np.random.default_rng([seed, 7]).choice(len(y), n, replace=False)
    hit = y > options.threshold
    return pd.DataFrame({
        "method": ["causal intervention", "random forest (greedy)", "random (one draw)", "random (expectation)"],
        "proposals": [n, n, n, n],
        "success_rate": [float((design.proposals["true_target"] > options.threshold).mean()), float(hit[greedy].mean()),
                         float(hit[draw].mean()), float(hit.mean())],
    })
