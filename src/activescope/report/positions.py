"""The report section of experiments whose candidates are probe positions: "Measurement path and
maps".

A run qualifies when its pool carries positions (info columns ``x_nm``, ``y_nm``, as the
`probe_grid` source makes). The section shows the measurement path in real space over the
instrument's overview image, the same path in the 2-D latent space of the report's latent model,
the predicted property and uncertainty maps over every candidate position, and the raw spectra
at a few chosen points, and writes the path as ``artifacts/path.csv``.

The report does not import the instruments package (layering): the instrument is rebuilt from the
spec through the engine's registry and used by duck typing only — ``describe()`` (``axis_name``,
``axis_unit``, ``unit``) and ``overview()`` (``image``, ``geometry.extent_nm``, ``channel``,
``unit``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..engine.errors import ActivescopeError
from . import figures
from . import html as markup

POSITION_COLUMNS = ("x_nm", "y_nm")
CHOSEN = 3  # spectra shown per group (best, first)
LATENT_BACKGROUND = 5000  # candidates drawn behind the latent path
PATH_CSV = "path.csv"


@dataclass
class InstrumentView:
    """What the report could learn from the run's instrument: its description (spectral axis
    names and units) and a fresh overview, or why not (`problem`)."""

    info: Any = None
    overview: Any = None
    problem: str | None = None


def has_positions(pool: Any) -> bool:
    """Whether the pool's candidates are probe positions (info columns x_nm and y_nm)."""
    return set(POSITION_COLUMNS) <= set(pool.info.columns)


def instrument_view(spec: Any, instrument: Any = None) -> InstrumentView:
    """Describe the run's instrument and take an overview: `instrument` when given (left
    open), else one rebuilt from the spec's instrument section (closed again). An instrument
    that cannot be built or reached gives a view with `problem` set instead of an error."""
    from ..engine.assemble import build_instrument

    view = InstrumentView()
    built = instrument is None
    try:
        if built:
            instrument = build_instrument(spec)
        if instrument is None:
            view.problem = "the spec has no instrument section"
            return view
        view.info = instrument.describe()
        view.overview = instrument.overview()
    except (ActivescopeError, OSError) as err:
        view.problem = f"the instrument could not be reached ({type(err).__name__}: {' '.join(str(err).split())})"
    finally:
        if built and instrument is not None and hasattr(instrument, "close"):
            instrument.close()
    return view


def chosen_ids(measurements: pd.DataFrame, goal: str, k: int = CHOSEN) -> dict[str, list[str]]:
    """Ids of the successful measurements whose spectra the report shows: the best `k` (for
    `goal`) and the first `k` taken."""
    ok = measurements[np.isfinite(measurements["value"].to_numpy(dtype=float))]
    best = ok.sort_values("value", ascending=goal == "minimize", kind="stable").head(k)
    first = ok.sort_values("measured_at", kind="stable").head(k)
    return {f"best {len(best)}": best["id"].tolist(), f"first {len(first)}": first["id"].tolist()}


def _field_from_positions(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max), nm, of the candidate positions plus half a grid step."""
    steps = [np.diff(np.unique(v)) for v in (x, y)]
    step = min((float(s.min()) for s in steps if s.size), default=1.0)
    return (x.min() - step / 2, x.max() + step / 2, y.min() - step / 2, y.max() + step / 2)


def _label(name: str, unit: str) -> str:
    return f"{name} ({unit})" if unit else name


def path_section(run: Any, models: Any, view: InstrumentView, save: Callable[[str, Figure, str], str]) -> str:
    """The section's HTML. `run` is the report's run (spec, pool, measurements, rows, values,
    ok, spectra, artifacts); `models` its refitted models (`model`, `latent`, `latent_origin`,
    `n_train`) or None; `save(name, figure, caption)` writes a figure and returns its markup."""
    m = run.measurements
    order = np.argsort(m["measured_at"].to_numpy(dtype=str), kind="stable")  # the order taken
    rows, ok = run.rows[order], run.ok[order]
    info = run.pool.info
    x_all, y_all = (info[c].to_numpy(dtype=float) for c in POSITION_COLUMNS)
    x, y = x_all[rows], y_all[rows]
    chosen = chosen_ids(m, run.goal)
    path_ids = m["id"].to_numpy()[order]
    best_key = next(iter(chosen))
    highlight = {f"B{i + 1}": int(np.flatnonzero(path_ids == k)[0]) for i, k in enumerate(chosen[best_key])}
    parts = []
    if view.problem:
        parts.append(markup.note(f"No overview image: {view.problem}; the path is drawn on a blank field of view."))

    overview = view.overview
    if overview is not None:
        fig = figures.measurement_path_figure(x, y, ok, overview.geometry.extent_nm, image=overview.image,
                                              image_label=_label(f"overview: {overview.channel}", overview.unit),
                                              highlight=highlight)
        where = f"over a fresh overview image ({overview.channel}) of the instrument"
    else:
        fig = figures.measurement_path_figure(x, y, ok, _field_from_positions(x_all, y_all), highlight=highlight)
        where = "on the field of view spanned by the candidate positions"
    parts.append(save("path_real", fig, (
        f"The {len(rows)} measured positions in the order they were taken (colour and numbers: measurement order; "
        f"red crosses: failed measurements; cyan stars B1–B{len(highlight)}: the best {run.target} values measured), "
        f"{where}.")))

    table = pd.DataFrame({"order": np.arange(1, len(rows) + 1), "id": path_ids, "round": m["round"].to_numpy()[order],
                          "x_nm": x, "y_nm": y, run.target: run.values[order], "status": m["status"].to_numpy()[order]})
    if models is None:
        parts.append(markup.note("Fewer than 3 successful measurements: no model, so no latent path and no maps."))
    else:
        parts += _model_parts(run, models, rows, ok, table, x_all, y_all, save)
    table.to_csv(run.artifacts / PATH_CSV, index=False)
    parts.append(_spectra(run, view, chosen, x_all, y_all, save))
    return "".join(parts)


def _model_parts(run: Any, models: Any, rows: np.ndarray, ok: np.ndarray, table: pd.DataFrame,
                 x_all: np.ndarray, y_all: np.ndarray, save: Callable[[str, Figure, str], str]) -> list[str]:
    """The latent path and the predicted property and uncertainty maps (adds the latent
    coordinates of the path to `table`)."""
    pool = run.pool
    background = np.random.default_rng(run.spec.seed).permutation(len(pool))[:LATENT_BACKGROUND]
    latent_path = models.latent.embed(pool.X[rows])
    table["latent_1"], table["latent_2"] = latent_path[:, 0], latent_path[:, 1]
    fig = figures.latent_path_figure(models.latent.embed(pool.X[background]), latent_path, ok)
    parts = [save("path_latent", fig, (
        f"The same path in the 2-D latent space of the latent map above, from {models.latent_origin}; "
        f"grey: {background.size:,} candidates. Points close in this space are predicted alike."))]
    mean, variance = models.model.predict(pool.X)
    measured = np.zeros(len(pool), dtype=bool)
    measured[rows] = True
    fig = figures.property_maps_figure(x_all, y_all, np.asarray(mean), np.sqrt(np.clip(variance, 0, None)), measured,
                                       run.target)
    parts.append(save("property_maps", fig, (
        f"Model '{run.spec.model.kind}' refit on all {models.n_train} successful measurements, predicting "
        f"{run.target} at all {len(pool):,} candidate positions. Left: predicted mean; right: predictive standard "
        f"deviation; white circles: measured positions.")))
    return parts


def _spectra(run: Any, view: InstrumentView, chosen: dict[str, list[str]], x_all: np.ndarray, y_all: np.ndarray,
             save: Callable[[str, Figure, str], str]) -> str:
    """The raw spectra of the chosen points, or a note when none was recorded."""
    index = dict(zip(run.measurements["id"], range(len(run.measurements))))
    groups = {}
    for title, ids in chosen.items():
        curves = []
        for k in ids:
            raw = run.spectra.get(k)
            if raw is None or raw.ndim != 2 or raw.shape[0] != 2:
                continue
            i = index[k]
            row = run.rows[i]
            curves.append((f"{k} at ({x_all[row]:.4g}, {y_all[row]:.4g}) nm: {run.target} = {run.values[i]:.4g}", raw))
        if curves:
            groups[title] = curves
    if not groups:
        return markup.note("No raw spectra were recorded for the chosen points.")
    info = view.info
    axis_label = _label(info.axis_name, info.axis_unit) if info is not None else "spectral axis"
    value_label = _label("signal", info.unit) if info is not None else "signal"
    caption = (f"Raw signals from the run record, {value_label} against {axis_label}: left at the positions with the "
               f"best {run.target} measured (B1–B3 in the path above), right at the first positions measured.")
    return save("spectra", figures.spectra_figure(groups, axis_label, value_label), caption)


__all__ = ["InstrumentView", "chosen_ids", "has_positions", "instrument_view", "path_section"]
