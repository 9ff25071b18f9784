"""The three steps of an active-causal-learning study, as the CLI runs them; each writes its
results (CSV/JSON/NPZ and figures) into a run directory and an HTML report there.

- `run_discover`: the full pool's graph over every descriptor, the top-k causal features and
  their graph.
- `run_select`: the active subset selection (recorded and resumable), then the random-growth
  baselines over `compare_seeds` seeds and the random forest's R² on subset vs full data.
- `run_intervene`: the causal model of the active subset, interventions, and design-region
  proposals with their success rate against random and correlational picks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from ...engine.errors import RunStateError
from ...engine.store import Store
from . import report
from .data import CausalData, load_causal_data
from .discovery import CausalGraph, learn_graph
from .interventions import propose, success_rates
from .selection import (
    CAUSAL_SPEC,
    SubsetScorer,
    discover,
    feature_columns,
    random_growth,
    select_subset,
    smallest_size_reaching,
)
from .spec import CausalSpec, load_causal_spec


def run_discover(spec: CausalSpec, out: Path, data: CausalData | None = None) -> Path:
    """Causal discovery on the full pool; writes the graphs (npz/csv/json, png), the causal
    features with their effects, and report.html into `out`. Returns the report's path."""
    data = data or load_causal_data(spec.data)
    found = discover(data, spec)
    out.mkdir(parents=True, exist_ok=True)
    (out / CAUSAL_SPEC).write_text(spec.to_yaml())
    found.all_descriptors.save(out / "graph_all_descriptors")
    found.full.save(out / "graph_full")
    effects = _effects_table(found.all_descriptors, found.features)
    effects.to_csv(out / "causal_features.csv", index=False)
    return report.discovery_report(out, spec, found.all_descriptors, found.full, effects, len(data.pool))


def run_select(spec: CausalSpec, run_dir: Path, progress: bool = True, data: CausalData | None = None) -> Path:
    """Active selection (resumes a killed run), then the random-growth comparison and R²;
    writes curves.csv, summary.json and report.html under `run_dir/artifacts`."""
    data = data or load_causal_data(spec.data)
    result = select_subset(run_dir, spec, data, progress)
    found = result.discovery
    artifacts = run_dir / "artifacts"
    scorer = SubsetScorer(feature_columns(data, found.features), [*found.features, data.target], found.full,
                          spec.graph_loss.kind, spec.discovery.measure)
    curves = [result.rounds.assign(method="active", seed=spec.seed)]
    options = spec.selection
    with Progress(transient=True, disable=not (progress and sys.stderr.isatty())) as bar:
        bar.add_task("random-growth baselines", total=options.compare_seeds * (options.max_rounds + 1))
        for seed in range(options.compare_seeds):
            curves.append(random_growth(scorer, spec, seed, bar).assign(method="random", seed=seed))
    table = pd.concat(curves, ignore_index=True)
    table.to_csv(artifacts / "curves.csv", index=False)
    summary = _summary(spec, data, result.rows, table, found.features, result.stop_reason)
    (artifacts / "summary.json").write_text(json.dumps(summary, indent=1))
    subset = learn_graph(scorer.data[result.rows], scorer.names, spec.discovery.measure, strict=False)
    subset.save(artifacts / "graph_subset")
    return report.run_report(artifacts, spec)


def run_intervene(run_dir: Path) -> Path:
    """Fit the causal model on a selection run's active subset, intervene, propose design-region
    molecules and score them; writes interventions.csv, proposals.csv, success.csv, report.html."""
    spec_path = run_dir / "artifacts" / CAUSAL_SPEC
    if not Store.exists(run_dir) or not spec_path.is_file():
        raise RunStateError(f"{run_dir} is not a causal selection run; run `activescope causal select` first")
    spec = load_causal_spec(spec_path)
    if not (run_dir / "artifacts" / "graph_subset.npz").is_file():
        raise RunStateError(f"{run_dir}: the selection has not finished; resume it with `activescope causal select`")
    with Store.open(run_dir) as store:
        ids = store.training_data()[0]
    data = load_causal_data(spec.data)
    features = CausalGraph.load(run_dir / "artifacts" / "graph_full").names[:-1]
    index = {k: i for i, k in enumerate(data.pool.ids.tolist())}
    rows = np.array([index[k] for k in ids])
    columns = data.columns(features)
    graph = learn_graph(np.column_stack([data.pool.X[rows][:, columns], data.pool.y[rows]]), [*features, data.target],
                        spec.discovery.measure, strict=False)
    design = propose(graph, data.design, columns, spec.intervention)
    rates = success_rates(design, data, graph, rows, spec.intervention, spec.seed)
    artifacts = run_dir / "artifacts"
    design.interventions.to_csv(artifacts / "interventions.csv", index=False)
    design.proposals.to_csv(artifacts / "proposals.csv", index=False)
    rates.to_csv(artifacts / "success.csv", index=False)
    (artifacts / "intervention.json").write_text(json.dumps({"subset_size": len(rows), "design_molecules": len(data.design)}))
    return report.run_report(artifacts, spec)


def forest_r2(train_X: np.ndarray, train_y: np.ndarray, test_X: np.ndarray, test_y: np.ndarray, seed: int = 0) -> float:
    """R² on the test set of a random forest (200 trees) trained on the training set."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score

    forest = RandomForestRegressor(200, min_samples_leaf=2, random_state=seed, n_jobs=1).fit(train_X, train_y)
    return float(r2_score(test_y, forest.predict(test_X)))


def _effects_table(graph: CausalGraph, features: list[str]) -> pd.DataFrame:
    effects = graph.effects_on_target()
    physical = graph.effects_on_target(physical=True)
    table = pd.DataFrame({"descriptor": effects.index, "total_effect_std": effects.to_numpy(),
                          "total_effect": physical.to_numpy()})
    table["causal_feature"] = table["descriptor"].isin(features)
    return table.sort_values("total_effect_std", key=np.abs, ascending=False, kind="stable").reset_index(drop=True)


def _summary(spec: CausalSpec, data: CausalData, rows: np.ndarray, curves: pd.DataFrame, features: list[str], stop: str) -> dict:
    """Smallest subsets reaching the loss threshold and the random forest's R² (causal features →
    target) trained on the active subset, on random subsets of the same size, and on the full pool."""
    columns = data.columns(features)
    X, y = data.pool.X[:, columns], data.pool.y
    test_X, test_y = data.test.X[:, columns], data.test.y
    threshold = spec.selection.loss_threshold
    active = curves[curves["method"] == "active"]
    randoms = [curves[(curves["method"] == "random") & (curves["seed"] == s)] for s in range(spec.selection.compare_seeds)]
    random_r2 = []
    for seed in range(spec.selection.compare_seeds):
        same_size = np.random.default_rng([seed, 99]).choice(len(y), rows.size, replace=False)
        random_r2.append(forest_r2(X[same_size], y[same_size], test_X, test_y, seed))
    return {
        "pool_molecules": len(y), "test_molecules": len(test_y), "features": features, "stop_reason": stop,
        "subset_size": int(rows.size), "final_loss": float(active["graph_loss"].iloc[-1]),
        "loss_threshold": threshold,
        "active_smallest_size_reaching_threshold": _none_if_nan(smallest_size_reaching(active, threshold)),
        "random_smallest_size_reaching_threshold": [_none_if_nan(smallest_size_reaching(c, threshold)) for c in randoms],
        "r2_full": forest_r2(X, y, test_X, test_y, spec.seed),
        "r2_active_subset": forest_r2(X[rows], y[rows], test_X, test_y, spec.seed),
        "r2_random_subsets": random_r2,
    }


def _none_if_nan(value: float) -> float | None:
    """JSON has no NaN: a threshold never reached is null."""
    return None if np.isnan(value) else value
