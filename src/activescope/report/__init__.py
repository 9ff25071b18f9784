"""Campaign reports: one self-contained HTML page per run directory.

`report_run(run_dir)` reads the run record, rebuilds the pool (from the feature cache), refits
the campaign's model on every measurement, and writes `artifacts/report.html` plus each figure as
a PNG beside it. Sections that need the pool's true values (recall curves, parity) appear only
when the pool has labels for the target, so the same report serves ask/tell lab campaigns. Runs
whose candidates are probe positions get the "Measurement path and maps" section (`positions`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..engine.errors import RunStateError
from ..engine.metrics import regression_summary, round_seconds, top_fraction_k, top_k_recall
from ..engine.pool import Pool
from ..engine.spec import CampaignSpec, ModelSpec
from . import figures
from . import html as markup
from . import positions, selection

PARITY_SAMPLE = 5000
BEST_ROWS = 10
MAX_HYPERPARAMETERS = 12
REPORT_NAME = "report.html"


@dataclass
class _Run:
    """What the sections read: the spec, the pool and the measured rows in measurement order."""

    spec: CampaignSpec
    pool: Pool
    measurements: pd.DataFrame
    rounds: pd.DataFrame
    rows: np.ndarray
    all_values: np.ndarray | None
    artifacts: Path
    spectra: dict[str, np.ndarray] = field(default_factory=dict)  # raw signals of the chosen points, by id

    @property
    def target(self) -> str:
        return self.spec.target.column

    @property
    def goal(self) -> str:
        return self.spec.target.goal

    @property
    def values(self) -> np.ndarray:
        return self.measurements["value"].to_numpy(dtype=float)

    @property
    def ok(self) -> np.ndarray:
        return np.isfinite(self.values)

    @property
    def n_initial(self) -> int:
        return int((self.measurements["round"] == 0).sum())


@dataclass
class _Models:
    """The models the report refits on every successful measurement: the campaign's `model`,
    and `latent`, a model with a 2-D `embed` for latent maps (the campaign's own when it has
    one, else a DKL fitted only for the maps; `latent_origin` says which)."""

    model: Any
    latent: Any
    latent_origin: str
    n_train: int


def report_run(run_dir: str | Path, pool: Pool | None = None, instrument: Any = None) -> Path:
    """Write `<run_dir>/artifacts/report.html` (and the figures as PNG there); return its path.

    `pool`, when given, is the run's pool already in memory (otherwise it is rebuilt from the spec).
    `instrument`, when given, is the run's instrument, open (otherwise one is built from the spec
    when the pool or an overview image needs it, and closed again).
    """
    from ..engine.assemble import build_instrument, build_pool_for
    from ..engine.store import Store

    store = Store.open(run_dir)  # read-only use: no lock, so a running campaign can be watched
    own = None
    try:
        try:
            spec = store.spec()
            if pool is None:
                if instrument is None:
                    own = instrument = build_instrument(spec)
                pool = build_pool_for(spec, instrument)
            run = _read(store, spec, pool)
        finally:
            store.close()
        return _write(run, run_dir, instrument)
    finally:
        if own is not None and hasattr(own, "close"):
            own.close()


def _read(store: Any, spec: CampaignSpec, pool: Pool) -> _Run:
    """What the sections need from the run record (the spectra of the chosen points included)."""
    measurements = store.measurements().reset_index(drop=True)
    labels = pool.labels
    all_values = labels[spec.target.column].to_numpy(dtype=float) if spec.target.column in labels else None
    try:
        rows = pool.index_of(measurements["id"].tolist())
    except KeyError as err:
        raise RunStateError(f"{store.run_dir}: measured id {err.args[0]!r} is not in the pool") from None
    spectra = {}
    if positions.has_positions(pool) and len(measurements):
        for ids in positions.chosen_ids(measurements, spec.target.goal).values():
            spectra.update({k: store.raw(k) for k in ids})
    return _Run(spec=spec, pool=pool, measurements=measurements, rounds=store.rounds(), rows=rows,
                all_values=all_values, artifacts=Path(store.artifacts), spectra=spectra)


def _write(run: _Run, run_dir: str | Path, instrument: Any) -> Path:
    """Build every section and write the page; returns its path."""
    run.artifacts.mkdir(parents=True, exist_ok=True)
    sections = [("summary", "Run summary", _summary(run))]
    if len(run.measurements):
        sections.append(("progress", "Progress", _progress(run)))
        models = _fit_models(run)
        sections += _model_sections(run, models)
        if positions.has_positions(run.pool):
            view = positions.instrument_view(run.spec, instrument)
            save = lambda name, fig, caption: _save(run, name, fig, caption)  # noqa: E731
            sections.append(("path", "Measurement path and maps", positions.path_section(run, models, view, save)))
        sections.append(("best", f"Best {BEST_ROWS} candidates found", _best_table(run)))
    chooser = selection.section(run.rounds, lambda name, fig, caption: _save(run, name, fig, caption))
    if chooser:
        sections.append(("selection", "Model selection", chooser))
    if len(run.rounds):
        sections.append(("timings", "Timings", _save(run, "timings", figures.timings_figure(run.rounds),
                                                      "Working seconds per round, stacked by phase (round 0 is the initial design).")))
    subtitle = f"activescope report for run directory {Path(run_dir).resolve()} — generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    path = run.artifacts / REPORT_NAME
    path.write_text(markup.page(f"Campaign report: {run.spec.name}", subtitle, sections), encoding="utf-8")
    return path


def _save(run: _Run, name: str, fig: Figure, caption: str) -> str:
    """Save the figure as `artifacts/<name>.png` and return its embedded HTML."""
    png = figures.figure_png(fig)
    (run.artifacts / f"{name}.png").write_bytes(png)
    return markup.image(png, alt=name, caption=caption)


def _best_index(values: np.ndarray, goal: str) -> int:
    return int(np.nanargmax(values) if goal == "maximize" else np.nanargmin(values))


def _summary(run: _Run) -> str:
    spec, m = run.spec, run.measurements
    model = ", ".join([spec.model.kind] + [f"{k}={v}" for k, v in spec.model.options().items()])
    acq = spec.acquisition
    items: dict[str, object] = {
        "spec name": spec.name,
        "data source": f"{spec.data.source if spec.data else 'given in Python'} ({len(run.pool):,} candidates, {run.pool.X.shape[1]} features)",
        "target": run.target,
        "goal": run.goal,
        "model": model,
        "acquisition": ", ".join(
            [acq.kind, *(f"{k}={v}" for k, v in acq.options().items()), f"batch q={acq.q}", f"prefilter={acq.prefilter}"]
        ),
        "initial design": f"{spec.initial.n} ({spec.initial.method})",
        "budget": spec.stop.budget,
        "rounds completed": int(run.rounds["finished"].notna().sum()) if "finished" in run.rounds else len(run.rounds),
        "measurements (failed)": f"{len(m):,} ({int((~run.ok).sum())})",
    }
    if run.ok.any():
        best = _best_index(run.values, run.goal)
        items["best found"] = f"{run.values[best]:.6g} (id {m['id'].iloc[best]}, round {int(m['round'].iloc[best])})"
    if run.all_values is not None and len(m):
        finite = run.all_values[np.isfinite(run.all_values)]
        for label, k in (("top-100", min(100, finite.size)), ("top-1%", top_fraction_k(finite.size))):
            items[f"{label} recall"] = f"{top_k_recall(run.values, run.all_values, k, run.goal):.3f} (k = {k:,})"
    if len(run.rounds):
        seconds = round_seconds(run.rounds)
        items["time per round (median / total)"] = f"{np.median(seconds):.2f} s / {_duration(seconds.sum())}"
    if len(run.rounds) and "hyperparameters" in run.rounds:
        last = run.rounds["hyperparameters"].iloc[-1]
        shown = list(dict(last).items())[:MAX_HYPERPARAMETERS]
        items["last round's hyperparameters"] = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in shown
        )
    return markup.key_value_table(items)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _progress(run: _Run) -> str:
    n0 = run.n_initial
    parts = [_save(run, "best_so_far", figures.best_so_far_figure(run.values, run.all_values, run.goal, run.target, n0),
                   "Best measured value against the number of measurements; grey: expected best of the same number of "
                   "uniform random draws from the pool (exact, not simulated).")]
    if run.all_values is None:
        parts.append(markup.note(f"The pool has no '{run.target}' labels, so recall against random cannot be computed."))
        return "".join(parts)
    finite = int(np.isfinite(run.all_values).sum())
    ks = {"top-100": min(100, finite), "top-1%": top_fraction_k(finite)}
    parts.append(_save(run, "recall", figures.recall_figure(run.values, run.all_values, run.goal, ks, n0),
                       "Fraction of the pool's true top-k found so far; grey: expected recall of uniform random sampling "
                       "(n/N without ties)."))
    return "".join(parts)


def _fit(spec: CampaignSpec, pool: Pool, X: np.ndarray, y: np.ndarray):
    from ..engine.assemble import build_surrogate

    return build_surrogate(spec, pool).fit(X, y)


def _map_spec(spec: CampaignSpec) -> CampaignSpec:
    """The spec with its model swapped for a 2-D DKL: the campaign's own DKL options with
    latent_dim=2 (an MLP extractor in place of the residual one), or a default DKL on the same
    feature columns as the campaign's model."""
    options = spec.model.options()
    if spec.model.kind != "dkl":
        options = {"columns": options["columns"]} if options.get("columns") else {}
    elif options.get("extractor") == "residual":  # its latent has the input's dimension
        options = {**options, "extractor": "mlp"}
    model = ModelSpec(kind="dkl", **{**options, "latent_dim": 2})
    return spec.model_copy(update={"model": model})


def _fit_models(run: _Run) -> _Models | None:
    """The campaign's model and the latent-map model refit on every successful measurement;
    None with fewer than 3."""
    ok_rows = run.rows[run.ok]
    if ok_rows.size < 3:
        return None
    X_train, y_train = run.pool.X[ok_rows], run.values[run.ok]
    model = _fit(run.spec, run.pool, X_train, y_train)
    if hasattr(model, "embed") and model.embed(X_train[:1]).shape[1] == 2:
        return _Models(model, model, f"the campaign's own model ('{run.spec.model.kind}', 2-D latent)", y_train.size)
    latent = _fit(_map_spec(run.spec), run.pool, X_train, y_train)
    origin = (f"a 2-D DKL fitted on the {y_train.size} measurements only for this map "
              f"(the campaign's model '{run.spec.model.kind}' has no 2-D latent space)")
    return _Models(model, latent, origin, y_train.size)


def _model_sections(run: _Run, models: _Models | None) -> list[tuple[str, str, str]]:
    """Parity of the refitted final model on unmeasured candidates, and the 2-D latent map."""
    if models is None:
        return [("model", "Model", markup.note("Fewer than 3 successful measurements: no model to show."))]
    model = models.model
    rng = np.random.default_rng(run.spec.seed)
    unmeasured = np.setdiff1d(np.arange(len(run.pool)), run.rows)
    if run.all_values is not None:
        unmeasured = unmeasured[np.isfinite(run.all_values[unmeasured])]
    sample = rng.permutation(unmeasured)[:PARITY_SAMPLE]
    sections = []
    mean, variance = model.predict(run.pool.X[sample]) if sample.size else (np.empty(0), np.empty(0))
    if run.all_values is not None and sample.size >= 2:
        stats = regression_summary(run.all_values[sample], mean, variance)
        caption = (f"Model '{run.spec.model.kind}' refit on all {models.n_train} successful measurements, predicting "
                   f"{sample.size:,} random unmeasured candidates. R² = {stats['r2']:.3f}, MAE = {stats['mae']:.4g}, "
                   f"RMSE = {stats['rmse']:.4g}; {stats['coverage_1sd']:.1%} within ±1σ (ideal 68.3%), "
                   f"{stats['coverage_2sd']:.1%} within ±2σ (ideal 95.4%).")
        fig = figures.parity_figure(run.all_values[sample], mean, variance, stats, run.target)
        sections.append(("parity", "Parity on unmeasured candidates", _save(run, "parity", fig, caption)))
    sections.append(("latent", "Latent map", _latent(run, models, sample)))
    return sections


def _latent(run: _Run, models: _Models, sample: np.ndarray) -> str:
    """The 2-D latent space (of `models.latent`) of the sample plus the measured points."""
    rows = np.concatenate([sample, run.rows[run.ok]])
    X = run.pool.X[rows]
    model, origin = models.latent, models.latent_origin
    latent = model.embed(X)
    mean, variance = model.predict(X)
    if run.all_values is not None:
        colour, colour_label = run.all_values[rows], f"true {run.target}"
    else:
        colour, colour_label = mean, f"predicted {run.target}"
    measured = np.arange(rows.size) >= sample.size
    fig = figures.latent_figure(latent, colour, np.sqrt(np.clip(variance, 0, None)), measured, colour_label)
    caption = (f"Latent coordinates from {origin}: {sample.size:,} random unmeasured candidates and the "
               f"{int(measured.sum())} measured ones (red rings). Left: coloured by {colour_label}; right: predictive σ.")
    return _save(run, "latent", fig, caption)


def _best_table(run: _Run) -> str:
    ok = run.measurements[run.ok].assign(_row=run.rows[run.ok])
    best = ok.sort_values("value", ascending=run.goal == "minimize", kind="stable").head(BEST_ROWS)
    frame = pd.DataFrame({
        "rank": np.arange(1, len(best) + 1),
        "id": best["id"].to_numpy(),
        run.target: best["value"].to_numpy(dtype=float),
        "round": best["round"].to_numpy(dtype=int),
    })
    if run.all_values is not None:
        sign = 1.0 if run.goal == "maximize" else -1.0
        pool = sign * run.all_values[np.isfinite(run.all_values)]
        frame["rank in pool"] = (pool[None, :] > sign * frame[run.target].to_numpy()[:, None]).sum(axis=1) + 1
    raw_columns: list[str] = []
    if "smiles" in run.pool.info:
        smiles = run.pool.info["smiles"].to_numpy()[best["_row"].to_numpy()]
        frame["smiles"] = smiles
        frame["structure"] = [figures.molecule_svg(s) for s in smiles]
        raw_columns.append("structure")
    return markup.table(frame, raw_html_columns=raw_columns)


__all__ = ["report_run"]
