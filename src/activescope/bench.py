"""Strategy benchmark: run a matrix of strategies × seeds on one pool and compare their recall.

A strategy is a dict of overrides of the base spec's sections, e.g.
`{"model": {"kind": "rf"}, "acquisition": {"kind": "greedy"}}`. Sections are merged key by key
into the base spec, except a section that names a different `kind` (model, acquisition, oracle),
which is replaced whole: the old kind's options would not fit the new one. Pools are built once per distinct data section
and shared by every run that uses it. Each run is a real Campaign in its own run directory
(`<out>/<strategy>/seed<k>`), so an interrupted benchmark resumes where it stopped.

A grid may span several targets (`targets=[(column, goal), ...]`): each target gets its own
folder `<out>/<column>/` with the single-target outputs, and `<out>/summary.{csv,md,png}` compare
strategies across targets. Runs go through a runner: `serial_runner` (the default, one after the
other in this process) or `activescope.scale.grid.ray_runner` (one Ray task per run); both give
the same results for the same seeds because every run is a seeded campaign of its own.

The `random` strategy (acquisition `kind: random`, no model) runs as a campaign like the others;
results also list its exact expectation (`activescope.engine.metrics`), which needs no sampling.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .engine.errors import DataError, SpecError
from .engine.metrics import (
    best_so_far,
    random_best_expectation,
    random_recall_expectation,
    recall_curve,
    round_seconds,
    top_fraction_k,
)
from .engine.pool import Pool
from .engine.spec import CampaignSpec, load_spec, override_section, parse_spec

DEFAULT_PRESET = "qm9-dipole"
HEADLINE_PROTOCOL: dict[str, Any] = {
    "name": "qm9-dipole-bench",
    "initial": {"n": 50, "method": "random"},
    "acquisition": {"q": 10},
    "stop": {"budget": 500, "max_rounds": None, "target_value": None},
}

# The default strategy is the base spec itself (for the headline: the qm9-dipole preset), so the
# preset a user runs and the strategy the benchmark reports can never drift apart.
DEFAULT_STRATEGY: dict[str, Any] = {}


def default_strategies() -> dict[str, dict[str, Any]]:
    """The benchmark matrix: name → overrides of the base spec."""
    return {
        "default": DEFAULT_STRATEGY,
        "gp-ucb": {"model": {"kind": "gp"}, "acquisition": {"kind": "ucb", "beta": 0.5}},
        "dkl-ucb": {"model": {"kind": "dkl"}, "acquisition": {"kind": "ucb", "beta": 2.0}},
        "gp-logei": {"model": {"kind": "gp"}, "acquisition": {"kind": "logei"}},
        "rf-greedy-morgan": {
            "data": {"features": [{"kind": "morgan", "radius": 2, "n_bits": 2048}]},
            "model": {"kind": "rf"},
            "acquisition": {"kind": "greedy"},
        },
        "rf-ucb-morgan": {  # MolPAL-recipe re-implementation: RF (100 trees, depth 8), UCB beta 2, Morgan counts
            "data": {"features": [{"kind": "morgan", "radius": 2, "n_bits": 2048}]},
            "model": {"kind": "rf", "max_depth": 8},
            "acquisition": {"kind": "ucb", "beta": 2.0},
        },
        "auto": {  # strategy selection: every block x surrogate, chosen by cross-validation (models/auto.py)
            "data": {"features": [{"kind": "physics"}, {"kind": "rdkit2d"}, {"kind": "morgan", "radius": 2, "n_bits": 2048}]},
            "model": {"kind": "auto"},
            "acquisition": {"kind": "ucb", "beta": 2.0},
        },
        "random": {"acquisition": {"kind": "random"}},
    }


def strategy_spec(base: CampaignSpec, name: str, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """The spec mapping of one run: base spec + overrides, with the run's seed and name."""
    merged = base.model_dump(mode="json")
    for section, values in overrides.items():
        if not isinstance(values, dict) or not isinstance(merged.get(section), dict):
            raise SpecError(f"strategy {name!r}: section {section!r} must be a mapping of spec options")
        merged[section] = override_section(getattr(base, section), copy.deepcopy(values))
    merged["seed"] = seed
    merged["name"] = f"{base.name}-{name}-seed{seed}"
    return merged


class _Pools:
    """Builds each distinct data section's pool once."""

    def __init__(self, first: tuple[dict[str, Any], Pool] | None = None) -> None:
        self._pools: dict[str, Pool] = {}
        if first is not None:
            self._pools[json.dumps(first[0], sort_keys=True)] = first[1]

    def get(self, data: dict[str, Any]) -> Pool:
        key = json.dumps(data, sort_keys=True)
        if key not in self._pools:
            from .engine.pool import build_pool

            options = {k: v for k, v in data.items() if k != "source"}
            self._pools[key] = build_pool(data["source"], **options)
        return self._pools[key]


def _labels(pool: Pool, spec: CampaignSpec) -> np.ndarray:
    column = spec.target.column
    if column not in pool.labels.columns:
        raise DataError(f"benchmarks need known values: the pool has no label column {column!r}")
    return pool.labels[column].to_numpy(dtype=float)


RunResult = tuple[np.ndarray, float, float]
"""One finished run: measured values in order, total seconds, median seconds per modelled round."""


@dataclass(frozen=True)
class GridRun:
    """One campaign of a benchmark grid: its target, strategy, seed, spec mapping and run folder."""

    target: str
    strategy: str
    seed: int
    spec: dict[str, Any]
    run_dir: Path


Runner = Callable[[list[GridRun], Callable[[dict[str, Any]], Pool]], Iterator[tuple[int, RunResult]]]
"""runner(runs, pool_for) yields (position in runs, result) as runs finish, in any order;
pool_for(data_section) gives the pool a run's spec names."""


def campaign_run(pool: Pool, spec_map: dict[str, Any], run_dir: Path) -> RunResult:
    """Run (or resume) one campaign: measured values in order, total and median per-round seconds."""
    from .engine.campaign import Campaign

    campaign = Campaign.create_or_open(run_dir, parse_spec(spec_map, origin=spec_map["name"]), pool)
    campaign.run(progress=False)
    rounds = campaign.store.rounds()
    values = campaign.store.measurements()["value"].to_numpy(dtype=float)
    campaign.store.close()
    seconds = round_seconds(rounds)
    model_rounds = seconds[rounds["round"].to_numpy() > 0]
    return values, float(seconds.sum()), float(np.median(model_rounds)) if model_rounds.size else 0.0


def serial_runner(runs: list[GridRun], pool_for: Callable[[dict[str, Any]], Pool]) -> Iterator[tuple[int, RunResult]]:
    """Runs one after the other in this process (the default runner)."""
    for i, run in enumerate(runs):
        yield i, campaign_run(pool_for(run.spec["data"]), run.spec, run.run_dir)


def target_spec(spec: CampaignSpec, column: str, goal: str | None) -> CampaignSpec:
    """`spec` with its target replaced (name suffixed with the column)."""
    chosen = {"column": column, "goal": goal or spec.target.goal}
    return parse_spec({**spec.model_dump(mode="json"), "name": f"{spec.name}-{column}", "target": chosen}, origin="targets")


def grid_runs(
    specs: dict[str, CampaignSpec], strategies: dict[str, dict[str, Any]], seeds: list[int], out_dirs: dict[str, Path]
) -> list[GridRun]:
    """Every (target, strategy, seed) run of a grid, target-major, with its run directory."""
    return [
        GridRun(target, name, seed, strategy_spec(spec, name, overrides, seed), out_dirs[target] / name / f"seed{seed}")
        for target, spec in specs.items()
        for name, overrides in strategies.items()
        for seed in seeds
    ]


def run_bench(
    spec: CampaignSpec,
    strategies: dict[str, dict[str, Any]],
    seeds: list[int],
    out_dir: Path,
    progress: bool = True,
    pool: Pool | None = None,
    targets: list[tuple[str, str | None]] | None = None,
    runner: Runner = serial_runner,
) -> pd.DataFrame:
    """Run every target × strategy × seed and return the per-run results (one row per run).

    Without `targets`: results.csv, curves.csv (both rewritten after every run), results.md and
    bench.png in `out_dir`. With `targets` ((column, goal) pairs; goal None keeps the spec's):
    those files per target in `out_dir/<column>/`, plus summary.csv, summary.md and summary.png
    across targets. `pool`, when given, is used for the base spec's data section instead of
    building it. `runner` decides where runs execute (see `Runner`).
    """
    from .engine.progress import progress_bar

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not strategies or not seeds:
        raise SpecError("a benchmark needs at least one strategy and one seed")
    if targets is not None and not targets:
        raise SpecError("--targets names no target")
    base_data = spec.model_dump(mode="json")["data"]
    pools = _Pools((base_data, pool) if pool is not None else None)
    specs = {spec.target.column: spec} if targets is None else {c: target_spec(spec, c, g) for c, g in targets}
    out_dirs = {c: out_dir if targets is None else out_dir / c for c in specs}
    runs = grid_runs(specs, strategies, seeds, out_dirs)
    for target_spec_ in specs.values():  # fail before running anything when a label is missing
        _labels(pools.get(base_data), target_spec_)
    finished: dict[int, RunResult] = {}
    with progress_bar(progress) as bar:
        task = bar.add_task(f"benchmark grid ({len(runs)} runs)", total=len(runs))
        for i, result in runner(runs, pools.get):
            finished[i] = result
            run = runs[i]
            bar.update(task, advance=1, description=f"{run.target} · {run.strategy} · seed {run.seed} done")
            done = [(runs[j], finished[j]) for j in sorted(finished) if runs[j].target == run.target]
            _write_tables(done, specs[run.target], pools, out_dirs[run.target])  # partial results survive an interrupt
    per_target = {}
    for target, target_spec_ in specs.items():
        done = [(runs[j], finished[j]) for j in sorted(finished) if runs[j].target == target]
        results, curve_table = _write_tables(done, target_spec_, pools, out_dirs[target])
        reference = _labels(pools.get(base_data), target_spec_)
        (out_dirs[target] / "results.md").write_text(results_markdown(results, target_spec_, reference), encoding="utf-8")
        _write_figure(curve_table, reference, target_spec_, out_dirs[target] / "bench.png")
        per_target[target] = results.assign(target=target, goal=target_spec_.target.goal)
    combined = pd.concat(per_target.values(), ignore_index=True)
    if targets is None:
        return combined.drop(columns=["target", "goal"])
    from .report.targets import write_target_summary

    truths = {target: _labels(pools.get(base_data), target_spec_) for target, target_spec_ in specs.items()}
    write_target_summary(combined, {t: s.target.goal for t, s in specs.items()}, truths, out_dir)
    return combined


def _write_tables(
    done: list[tuple[GridRun, RunResult]], spec: CampaignSpec, pools: "_Pools", out_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """results.csv and curves.csv of one target's finished runs (grid order); returns both."""
    rows, curves = [], []
    for run, (values, total_s, round_s) in done:
        curve = _curves(values, _labels(pools.get(run.spec["data"]), spec), spec.target.goal)
        curves.append(curve.assign(strategy=run.strategy, seed=run.seed))
        last = curve.iloc[-1]
        rows.append({
            "strategy": run.strategy, "seed": run.seed, "n_measured": len(values),
            "top100_recall": last["top100_recall"], "top1pct_recall": last["top1pct_recall"],
            "best_value": last["best"], "median_round_s": round_s, "total_s": total_s,
            "run_dir": str(run.run_dir),
        })
    results, curve_table = pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
    results.to_csv(out_dir / "results.csv", index=False)
    curve_table.to_csv(out_dir / "curves.csv", index=False)
    return results, curve_table


def _curves(values: np.ndarray, all_values: np.ndarray, goal: str) -> pd.DataFrame:
    """Per-measurement recall and best-so-far of one run."""
    finite = int(np.isfinite(all_values).sum())
    return pd.DataFrame({
        "measurement": np.arange(1, len(values) + 1),
        "top100_recall": recall_curve(values, all_values, min(100, finite), goal),
        "top1pct_recall": recall_curve(values, all_values, top_fraction_k(finite), goal),
        "best": best_so_far(values, goal),
    })


def _mean_sd(series: pd.Series, fmt: str, sd_fmt: str | None = None) -> str:
    sd = series.std(ddof=1) if len(series) > 1 else 0.0
    return f"{series.mean():{fmt}} ± {sd:{sd_fmt or fmt}}"


def results_markdown(results: pd.DataFrame, spec: CampaignSpec, all_values: np.ndarray) -> str:
    """The summary table (mean ± sd over seeds) with the exact random expectation as last row."""
    finite = int(np.isfinite(all_values).sum())
    budget = int(results["n_measured"].max())
    lines = [
        f"# Benchmark: {spec.target.goal} {spec.target.column}",
        "",
        f"Pool {finite:,} candidates ({spec.data.source}); {spec.initial.n} initial ({spec.initial.method}), "
        f"batches of {spec.acquisition.q}, {budget} measurements per run. Recall: fraction of the pool's true "
        f"top-100 / top-1% ({top_fraction_k(finite):,}) found; with {budget} measurements the top-1% recall can "
        f"reach at most {min(1.0, budget / top_fraction_k(finite)):.3f}. Mean ± sd over seeds.",
        "",
        "| strategy | seeds | top-100 recall | top-1% recall | best value | median s/round | total min |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.groupby("strategy", sort=False):
        lines.append(
            f"| {name} | {len(runs)} | {_mean_sd(runs['top100_recall'], '.3f')} | {_mean_sd(runs['top1pct_recall'], '.3f')} | "
            f"{_mean_sd(runs['best_value'], '.4g', '.2g')} | {runs['median_round_s'].median():.2f} | {runs['total_s'].sum() / 60:.2f} |"
        )
    top100 = random_recall_expectation(all_values, min(100, finite), budget, spec.target.goal)[-1]
    top1 = random_recall_expectation(all_values, top_fraction_k(finite), budget, spec.target.goal)[-1]
    best = random_best_expectation(all_values, budget, spec.target.goal)[-1]
    lines.append(f"| random (exact expectation) | – | {top100:.3f} | {top1:.3f} | {best:.4g} | – | – |")
    return "\n".join(lines) + "\n"


def _write_figure(curves: pd.DataFrame, all_values: np.ndarray, spec: CampaignSpec, path: Path) -> None:
    from .report.figures import figure_png, strategy_recall_figure

    finite = int(np.isfinite(all_values).sum())
    budget = int(curves["measurement"].max())
    by_measure: dict[str, dict[str, np.ndarray]] = {"top-100": {}, "top-1%": {}}
    for (name, _), runs in curves.groupby(["strategy", "seed"], sort=False):
        for measure, column in (("top-100", "top100_recall"), ("top-1%", "top1pct_recall")):
            by_measure[measure].setdefault(name, []).append(runs[column].to_numpy())
    stacked = {
        m: {name: _stack(arrays, budget) for name, arrays in per.items()} for m, per in by_measure.items()
    }
    random_curves = {
        "top-100": random_recall_expectation(all_values, min(100, finite), budget, spec.target.goal),
        "top-1%": random_recall_expectation(all_values, top_fraction_k(finite), budget, spec.target.goal),
    }
    ks = {"top-100": min(100, finite), "top-1%": top_fraction_k(finite)}
    path.write_bytes(figure_png(strategy_recall_figure(stacked, random_curves, spec.initial.n, ks)))


def _stack(arrays: list[np.ndarray], length: int) -> np.ndarray:
    """(runs, length) array; a run that stopped early keeps its last recall."""
    out = np.empty((len(arrays), length))
    for i, curve in enumerate(arrays):
        out[i, : curve.size] = curve
        out[i, curve.size :] = curve[-1] if curve.size else 0.0
    return out


def headline_spec() -> CampaignSpec:
    """The headline protocol on top of the default preset: full QM9 pool, 50 random initial
    molecules, 45 rounds of 10 (500 measurements), the preset's target (Dipole_debye, maximised)."""
    import yaml

    preset = resources.files("activescope").joinpath("presets", f"{DEFAULT_PRESET}.yaml")
    spec = yaml.safe_load(preset.read_text())
    for section, values in HEADLINE_PROTOCOL.items():
        spec[section] = {**spec.get(section, {}), **values} if isinstance(values, dict) else values
    return parse_spec(spec, origin="headline benchmark protocol")


def parse_targets(items: list[str]) -> list[tuple[str, str | None]]:
    """`column` or `column:goal` items (goal maximize or minimize) -> (column, goal or None)."""
    parsed = []
    for item in items:
        column, _, goal = item.strip().partition(":")
        if not column or goal not in ("", "maximize", "minimize"):
            raise SpecError(f"target {item!r}: expected COLUMN or COLUMN:maximize / COLUMN:minimize")
        parsed.append((column, goal or None))
    return parsed


def bench_main(
    spec_path: Path | None,
    strategies: list[str] | None,
    seeds: int,
    out_dir: Path,
    target: str | None = None,
    goal: str | None = None,
    targets: list[str] | None = None,
    runner: Runner = serial_runner,
) -> str:
    """CLI entry: run the named strategies of `default_strategies()` (all when None) with seeds
    0..seeds-1 on the spec at `spec_path` (default: `headline_spec()`), its target column and
    goal replaced by `target` and `goal` when given; `targets` (`column[:goal]` items, goal
    defaulting to `goal` or the spec's) makes it a multi-target grid. Returns results.md's text
    (summary.md's for a multi-target grid)."""
    spec = load_spec(spec_path) if spec_path is not None else headline_spec()
    if targets is not None and target is not None:
        raise SpecError("give either --target or --targets")
    if target is not None or goal is not None:
        chosen = {"column": target or spec.target.column, "goal": goal or spec.target.goal}
        name = f"{spec.name}-{chosen['column']}" if target else spec.name
        spec = parse_spec({**spec.model_dump(mode="json"), "name": name, "target": chosen}, origin="--target/--goal")
    matrix = default_strategies()
    if strategies:
        unknown = [s for s in strategies if s not in matrix]
        if unknown:
            raise SpecError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(matrix)}")
        matrix = {name: matrix[name] for name in strategies}
    if seeds < 1:
        raise SpecError(f"--seeds must be at least 1, got {seeds}")
    grid = parse_targets(targets) if targets is not None else None
    run_bench(spec, matrix, list(range(seeds)), out_dir, targets=grid, runner=runner)
    table = "summary.md" if grid is not None else "results.md"
    return (Path(out_dir) / table).read_text() + f"\nwritten to {Path(out_dir).resolve()}\n"
