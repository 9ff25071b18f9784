"""Active subset selection: the smallest set of molecules whose causal graph matches the pool's.

Each round proposes candidate batches (one random batch from each Gaussian-mixture region of
chemical space, MolLogP/TPSA/MolMR, plus uniformly random batches), learns the graph of the
subset grown by each, and keeps the batch with the lowest graph loss against the full pool's
graph. The run is recorded in the engine's run store like any campaign: every round's chosen
batch is a round of selections whose "measurements" are the molecules' target values, the
round's graph loss and every candidate's loss are its hyperparameters, and its graph is
`artifacts/graphs/round_<k>.npz`. A killed run resumes where it stopped; round k's candidates
are drawn from a generator seeded with [seed, k], so a resumed run chooses exactly what an
uninterrupted one would.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from ...engine.errors import RunStateError
from ...engine.oracle import Measurement
from ...engine.spec import CampaignSpec, parse_spec
from ...engine.store import Store
from .data import CausalData
from .discovery import CausalGraph, learn_graph, select_features
from .graph_loss import spectral_distance
from .spec import CausalSpec

CAUSAL_SPEC = "causal.yaml"


@dataclass
class SubsetScorer:
    """Learns the graph of a subset of pool rows over the causal features and scores it against the
    full pool's graph. `data` holds the features then the target as columns (n_pool, k + 1)."""

    data: np.ndarray
    names: list[str]
    full: CausalGraph
    kind: str = "adjacency"
    measure: str = "pwling"

    def score(self, rows: np.ndarray) -> tuple[float, CausalGraph]:
        """Graph loss of the subset `rows` and its graph."""
        graph = learn_graph(self.data[rows], self.names, self.measure, strict=False)
        return spectral_distance(graph.adjacency, self.full.adjacency, self.kind), graph


@dataclass
class Discovery:
    """Causal discovery on the whole pool: the graph over every descriptor, the top-k causal
    features, and the graph over those features and the target (the selection's reference)."""

    all_descriptors: CausalGraph
    features: list[str]
    full: CausalGraph


def discover(data: CausalData, spec: CausalSpec) -> Discovery:
    """Fit DirectLiNGAM on the full pool (all descriptors + target), keep the top-k features by
    |total effect| and refit on those (bad data is refused with one line)."""
    names = [*data.descriptors, data.target]
    everything = learn_graph(np.column_stack([data.pool.X, data.pool.y]), names, spec.discovery.measure)
    features = select_features(everything, spec.discovery.top_k)
    full = learn_graph(feature_columns(data, features), [*features, data.target], spec.discovery.measure)
    return Discovery(everything, features, full)


@dataclass
class SelectionResult:
    """What a selection run found: rounds (round, size, graph_loss, chosen candidate), the chosen
    pool rows in order, why it stopped, and the discovery it was measured against."""

    rounds: pd.DataFrame
    rows: np.ndarray
    stop_reason: str
    discovery: Discovery


def record_spec(spec: CausalSpec, target: str) -> CampaignSpec:
    """The campaign spec the run store records for a selection run: target, batch size, budget,
    and the causal spec's digest in its name (so resuming under another causal spec is refused)."""
    options = spec.selection
    return parse_spec({
        "name": f"{spec.name}-causal-{spec.digest()}",
        "seed": spec.seed,
        "target": {"column": target},
        "model": {"kind": "rf"},
        "acquisition": {"kind": "random", "q": options.batch},
        "initial": {"n": options.initial},
        "stop": {"budget": options.budget},
    }, origin="causal selection")


def open_run(run_dir: Path, spec: CausalSpec, target: str) -> Store:
    """Create the selection run directory, or reopen it (with its lock) if it holds this spec's run."""
    expected = record_spec(spec, target)
    if not Store.exists(run_dir):
        store = Store.create(run_dir, expected)
    else:
        store = Store.open(run_dir, lock=True)
        if store.spec_digest != expected.digest():
            store.close()
            raise RunStateError(f"{run_dir} holds a run of another spec; choose another run directory")
    if not (store.artifacts / CAUSAL_SPEC).is_file():  # also when a kill came right after creation
        (store.artifacts / CAUSAL_SPEC).write_text(spec.to_yaml())
    return store


def select_subset(run_dir: Path, spec: CausalSpec, data: CausalData, progress: bool = True) -> SelectionResult:
    """Run (or resume) the active selection in `run_dir` until the loss threshold, the budget, or
    `max_rounds`. Writes the discovery graphs and every round's graph under artifacts/."""
    store = open_run(run_dir, spec, data.target)
    try:
        found = _load_or_discover(store.artifacts, data, spec)
        scorer = SubsetScorer(feature_columns(data, found.features), [*found.features, data.target], found.full,
                              spec.graph_loss.kind, spec.discovery.measure)
        return _select(store, scorer, data, spec, found, progress)
    finally:
        store.close()


def random_growth(scorer: SubsetScorer, spec: CausalSpec, seed: int, progress: Progress | None = None) -> pd.DataFrame:
    """The baseline: grow the subset by one uniformly random batch per round (same initial subset
    rule, sizes and budget as the active selection). Columns: round, size, graph_loss."""
    options = spec.selection
    n = len(scorer.data)
    rows = np.random.default_rng([seed, 0]).choice(n, min(options.initial, n), replace=False)
    out = []
    for round_ in range(options.max_rounds + 1):
        if round_:
            left = np.setdiff1d(np.arange(n), rows)
            take = min(options.batch, options.budget - rows.size, left.size)
            if take <= 0:
                break
            rows = np.concatenate([rows, np.random.default_rng([seed, round_]).choice(left, take, replace=False)])
        out.append((round_, rows.size, scorer.score(rows)[0]))
        if progress is not None:
            progress.advance(progress.task_ids[-1])
    return pd.DataFrame(out, columns=["round", "size", "graph_loss"])


def region_labels(space: np.ndarray, regions: int, seed: int) -> np.ndarray:
    """Gaussian-mixture region of each molecule on its z-scored chemical-space coordinates."""
    from sklearn.mixture import GaussianMixture

    z = (space - space.mean(axis=0)) / np.where(space.std(axis=0) > 0, space.std(axis=0), 1.0)
    if regions == 1:
        return np.zeros(len(space), dtype=np.int64)
    return GaussianMixture(regions, random_state=seed, n_init=2).fit(z).predict(z)


def smallest_size_reaching(curve: pd.DataFrame, threshold: float) -> float:
    """The first subset size whose graph loss is at or below `threshold` (NaN if none is)."""
    reached = curve.loc[curve["graph_loss"] <= threshold, "size"]
    return float(reached.iloc[0]) if len(reached) else float("nan")


def feature_columns(data: CausalData, features: list[str]) -> np.ndarray:
    """The pool's values of the given features, then the target, as columns (n_pool, k + 1)."""
    return np.column_stack([data.pool.X[:, data.columns(features)], data.pool.y])


def _load_or_discover(artifacts: Path, data: CausalData, spec: CausalSpec) -> Discovery:
    """The discovery a run was started with (from its artifacts), or a new one saved there."""
    stems = artifacts / "graph_all_descriptors", artifacts / "graph_full"
    if all(s.with_suffix(".npz").is_file() for s in stems):
        everything, full = (CausalGraph.load(s) for s in stems)
        return Discovery(everything, full.names[:-1], full)
    found = discover(data, spec)
    found.all_descriptors.save(stems[0])
    found.full.save(stems[1])
    return found


def _candidates(pool_size: int, chosen: np.ndarray, regions: np.ndarray, spec: CausalSpec, round_: int) -> dict[str, np.ndarray]:
    """Candidate batches for a round: one per chemical-space region, then the random ones."""
    options = spec.selection
    rng = np.random.default_rng([spec.seed, round_])
    free = np.ones(pool_size, bool)
    free[chosen] = False
    size = min(options.batch, options.budget - chosen.size)
    out = {}
    for region in range(options.regions):
        members = np.flatnonzero(free & (regions == region))
        if size > 0 and members.size >= size:
            out[f"region_{region}"] = rng.choice(members, size, replace=False)
    left = np.flatnonzero(free)
    for k in range(options.random_batches):
        if size > 0 and left.size >= size:
            out[f"random_{k}"] = rng.choice(left, size, replace=False)
    return out


def _select(store: Store, scorer: SubsetScorer, data: CausalData, spec: CausalSpec, found: Discovery, progress: bool) -> SelectionResult:
    options = spec.selection
    index = {k: i for i, k in enumerate(data.pool.ids.tolist())}
    pending = store.open_round()
    if pending is not None:
        _measure(store, pending[0], np.array([index[k] for k in pending[1]]), data)
    rows = np.array([index[k] for k in store.selected_ids()], dtype=np.int64)
    history = list(store.rounds()["hyperparameters"])
    regions = region_labels(data.pool.space, options.regions, spec.seed)
    graphs = store.artifacts / "graphs"
    graphs.mkdir(exist_ok=True)
    stop = _stop_reason(history, rows.size, spec)
    with Progress(transient=True, disable=not (progress and sys.stderr.isatty())) as bar:
        task = bar.add_task("active causal selection", total=options.max_rounds + 1, completed=len(history))
        while stop is None:
            round_ = len(history)
            if round_ == 0:
                batches = {"initial": np.random.default_rng([spec.seed, 0]).choice(len(data.pool), min(options.initial, len(data.pool)), replace=False)}
            else:
                batches = _candidates(len(data.pool), rows, regions, spec, round_)
            if not batches:
                stop = "pool exhausted"
                break
            scored = {name: scorer.score(np.concatenate([rows, batch])) for name, batch in batches.items()}
            best = min(scored, key=lambda name: scored[name][0])
            loss, graph = scored[best]
            graph.save(graphs / f"round_{round_}", tables=False)
            batch = batches[best]
            hyper = {"graph_loss": loss, "subset_size": float(rows.size + batch.size), "chosen": float(list(batches).index(best)),
                     **{f"loss_{name}": value[0] for name, value in scored.items()}}
            store.start_round(round_, data.pool.ids[batch].tolist(), acquisition=np.full(batch.size, loss), hyperparameters=hyper)
            _measure(store, round_, batch, data)
            rows = np.concatenate([rows, batch])
            history.append(hyper)
            bar.advance(task)
            stop = _stop_reason(history, rows.size, spec)
    table = pd.DataFrame({
        "round": np.arange(len(history)),
        "size": [int(h["subset_size"]) for h in history],
        "graph_loss": [h["graph_loss"] for h in history],
    })
    return SelectionResult(table, rows, stop, found)


def _measure(store: Store, round_: int, rows: np.ndarray, data: CausalData) -> None:
    """Record the target values of a round's molecules (the retrospective "measurement")."""
    values = data.pool.y[rows]
    store.record(round_, [Measurement(str(k), float(v)) for k, v in zip(data.pool.ids[rows], values)], [1] * rows.size)


def _stop_reason(history: list[dict], size: int, spec: CausalSpec) -> str | None:
    options = spec.selection
    if not history:
        return None
    if history[-1]["graph_loss"] <= options.loss_threshold:
        return "loss threshold"
    if size >= options.budget:
        return "budget"
    if len(history) > options.max_rounds:
        return "max rounds"
    return None
