"""The report's "Measurement path and maps" section on real short automated experiments: BEPS
playback in process (the report rebuilds the instrument from the spec) and a served twin whose
server is gone when the report is written (blank field of view)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from activescope.engine.campaign import Campaign
from activescope.engine.store import Store
from activescope.instruments.playback import beps_playback
from activescope.instruments.server import ServerThread
from activescope.instruments.twin import DigitalTwin, TwinOptions
from activescope.report import figures, report_run

ROOT = Path(__file__).resolve().parents[2]
BEPS = ROOT / "data" / "beps_pto_50x50.h5"
BEPS_SECTION = {"kind": "playback", "path": str(BEPS), "cube": "Channel_000/generic/generic", "dims": "xyn",
                "axis": "Channel_000/generic/Voltage", "axis_name": "voltage", "axis_unit": "V",
                "x": "Channel_000/generic/X", "overview": "mean"}
SECTION_FIGURES = ("path_real", "path_latent", "property_maps", "spectra")
TOKEN = "report-token-0123456789"


def _spec(instrument: dict, model: dict, budget: int = 20, q: int = 5) -> dict:
    return {"name": "beps-report", "seed": 1, "instrument": instrument,
            "data": {"source": "probe_grid", "step": 5, "window": 3},
            "target": {"column": "loop_area", "goal": "maximize"}, "model": model,
            "acquisition": {"kind": "ucb", "q": q}, "initial": {"n": 10},
            "oracle": {"kind": "instrument", "scalarizer": "loop_area"}, "stop": {"budget": budget}}


class Rendered:
    """Every figure the report renders, by its PNG name (a spy on `_save`'s renderer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.figures: list[Figure] = []
        render = figures.figure_png

        def keep(fig: Figure, *args, **kwargs) -> bytes:
            self.figures.append(fig)
            return render(fig, *args, **kwargs)

        monkeypatch.setattr(figures, "figure_png", keep)

    def titled(self, start: str) -> Figure:
        found = [f for f in self.figures if any(ax.get_title().startswith(start) for ax in f.axes)]
        assert len(found) == 1, [ax.get_title() for f in self.figures for ax in f.axes]
        return found[0]


@pytest.fixture(scope="module")
def beps_run(tmp_path_factory: pytest.TempPathFactory):
    """A 20-measurement DKL experiment on BEPS playback (100 candidate positions), reported from
    its directory alone (the report rebuilds pool and instrument from the spec); returns the run
    directory, the page and the rendered figures."""
    run_dir = tmp_path_factory.mktemp("beps") / "run"
    with Campaign.create(run_dir, _spec(BEPS_SECTION, {"kind": "dkl", "fit_iters": 40, "warm_iters": 10})) as campaign:
        campaign.run(progress=False)
    with pytest.MonkeyPatch.context() as monkeypatch:
        rendered = Rendered(monkeypatch)
        page = report_run(run_dir).read_text()
    return run_dir, page, rendered


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def _measured(run_dir: Path) -> pd.DataFrame:
    with Store.open(run_dir) as store:
        m = store.measurements()
        m["raw"] = [store.raw(k) for k in m["id"]]
    return m.sort_values("measured_at", kind="stable").reset_index(drop=True)


def _offsets(ax) -> list[np.ndarray]:
    return [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]


def test_the_section_and_its_images_are_in_the_report(beps_run):
    run_dir, page, _ = beps_run
    assert '<h2>Measurement path and maps</h2>' in page and '<a href="#path">Measurement path and maps</a>' in page
    body = _section(page, "path")
    assert body.count('src="data:image/png;base64,') == len(SECTION_FIGURES)
    for name in SECTION_FIGURES:
        assert f'alt="{name}"' in body
        assert (run_dir / "artifacts" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert "The 20 measured positions in the order they were taken" in body
    assert "over a fresh overview image (mean) of the instrument" in body
    assert "No overview image" not in body
    # the section sits between the latent map and the best table
    assert page.index('<section id="latent">') < page.index('<section id="path">') < page.index('<section id="best">')


def test_the_real_space_path_is_the_run_over_the_overview(beps_run):
    run_dir, _, rendered = beps_run
    measured = _measured(run_dir)
    fig = rendered.titled("Measurement path in real space")
    ax = fig.axes[0]
    assert ax.get_title() == f"Measurement path in real space ({len(measured)} measurements)"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (nm)", "y (nm)")
    instrument = beps_playback(BEPS, overview="mean")
    np.testing.assert_array_equal(ax.images[0].get_array(), instrument.overview().image)
    x_min, x_max, y_min, y_max = instrument.describe().geometry.extent_nm
    assert ax.images[0].get_extent() == pytest.approx([x_min, x_max, y_max, y_min])
    geometry = instrument.describe().geometry
    cols, rows = zip(*((int(a[1:]) for a in k.split("_")) for k in measured["id"]))
    want = np.column_stack(geometry.to_nm(np.array(cols), np.array(rows)))
    points = _offsets(ax)[0]  # measured points, coloured by order
    np.testing.assert_allclose(points, want)  # one per measurement, in the order taken
    np.testing.assert_array_equal(ax.collections[0].get_array(), np.arange(1, len(measured) + 1))
    np.testing.assert_allclose(np.column_stack(ax.get_lines()[0].get_data()), want)
    numbers = [t.get_text() for t in ax.texts if t.get_text().isdigit()]
    assert numbers == [str(i) for i in range(1, len(measured) + 1)]
    best = measured.nlargest(3, "value")["id"].tolist()
    stars = [t.get_text() for t in ax.texts if t.get_text().startswith("B")]
    assert stars == ["B1", "B2", "B3"]
    star_points = np.vstack([o for o in _offsets(ax)[1:]])
    np.testing.assert_allclose(star_points, want[[measured.index[measured["id"] == k][0] for k in best]])
    colorbars = [a.get_ylabel() for a in fig.axes[1:]]
    assert "overview: mean (a.u.), 1–99th percentile" in colorbars and "measurement order (1 = first)" in colorbars


def test_path_csv_latent_path_and_maps_reflect_the_run(beps_run):
    run_dir, _, rendered = beps_run
    measured = _measured(run_dir)
    table = pd.read_csv(run_dir / "artifacts" / "path.csv")
    assert table["order"].tolist() == list(range(1, len(measured) + 1))
    assert table["id"].tolist() == measured["id"].tolist()
    np.testing.assert_allclose(table["loop_area"], measured["value"])
    assert set(table["status"]) == {"measured"}

    latent = rendered.titled("Measurement path in the latent space").axes[0]
    background, path = _offsets(latent)[:2]
    assert len(background) == 100 and (latent.get_xlabel(), latent.get_ylabel()) == ("latent 1", "latent 2")
    np.testing.assert_allclose(path, table[["latent_1", "latent_2"]].to_numpy(), rtol=1e-5)
    assert np.all(np.abs(path) < 1.0)  # the DKL latent is tanh-bounded

    maps = rendered.titled("Predicted loop_area")
    mean_ax, sd_ax = maps.axes[:2]
    assert mean_ax.get_title() == "Predicted loop_area (100 candidate positions)"
    for ax in (mean_ax, sd_ax):
        image = ax.images[0].get_array()
        assert image.shape == (10, 10) and np.isfinite(image).all()  # the 10 x 10 candidate grid
        assert len(_offsets(ax)[0]) == len(measured)  # measured positions marked
        assert ax.get_xlabel() == "x (nm)"
    assert np.all(sd_ax.images[0].get_array() > 0)
    labels = [a.get_ylabel() for a in maps.axes[2:]]
    assert labels == ["predicted loop_area (1–99th percentile)", "predictive σ of loop_area (1–99th percentile)"]


def test_the_spectra_are_the_recorded_ones_at_the_best_and_first_points(beps_run):
    run_dir, _, rendered = beps_run
    measured = _measured(run_dir)
    fig = rendered.titled("best 3")
    best_ax, first_ax = fig.axes
    assert first_ax.get_title() == "first 3"
    assert (best_ax.get_xlabel(), best_ax.get_ylabel()) == ("voltage (V)", "signal (a.u.)")
    for ax, rows in ((best_ax, measured.nlargest(3, "value")), (first_ax, measured.head(3))):
        lines = ax.get_lines()
        assert len(lines) == 3
        for line, row in zip(lines, rows.itertuples()):
            np.testing.assert_array_equal(np.vstack(line.get_data()), row.raw)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert [t.split(" ")[0] for t in legend] == rows["id"].tolist()


def test_a_run_on_an_unreachable_instrument_is_drawn_on_a_blank_field(tmp_path, monkeypatch):
    twin = DigitalTwin(TwinOptions(seed=2, size=40, channels=128, latency_s=0.0, drift_velocity_nm_s=(0.0, 0.0),
                                   drift_walk_nm=0.0))
    monkeypatch.setenv("ACTIVESCOPE_TWIN_TOKEN", TOKEN)
    run_dir = tmp_path / "run"
    with ServerThread(twin, TOKEN) as server:
        remote = {"kind": "remote", "url": server.url, "retries": 1, "backoff_s": 0.01}
        spec = _spec(remote, {"kind": "rf"}, budget=14, q=2)
        spec.update(target={"column": "plasmon_peak_ev", "goal": "maximize"},
                    oracle={"kind": "instrument", "scalarizer": {"kind": "peak_position", "low": 12.0, "high": 32.0}})
        with Campaign.create(run_dir, spec) as campaign:
            campaign.run(progress=False)
            pool = campaign.pool
    rendered = Rendered(monkeypatch)
    body = _section(report_run(run_dir, pool=pool).read_text(), "path")
    assert "No overview image: the instrument could not be reached (InstrumentUnavailable" in body
    assert "on the field of view spanned by the candidate positions" in body
    ax = rendered.titled("Measurement path in real space").axes[0]
    assert not ax.images and len(_offsets(ax)[0]) == 14
    x_min, x_max = ax.get_xlim()
    y_max, y_min = ax.get_ylim()  # y grows downwards, as in the overview
    assert x_min < pool.info["x_nm"].min() and x_max > pool.info["x_nm"].max() and y_max > y_min
    # without the instrument's description the spectra keep generic labels; the data are the record's
    spectra = rendered.titled("best 3")
    assert spectra.axes[0].get_xlabel() == "spectral axis"
    with Store.open(run_dir) as store:
        first = store.measurements().sort_values("measured_at", kind="stable")["id"].iloc[0]
        np.testing.assert_array_equal(np.vstack(spectra.axes[1].get_lines()[0].get_data()), store.raw(first))
    assert (run_dir / "artifacts" / "property_maps.png").exists()


def test_path_and_map_figures_handle_failures_and_scattered_positions():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 50, 90), rng.uniform(0, 30, 90)  # not a grid: the maps fall back to scatter
    ok = np.ones(90, dtype=bool)
    ok[[3, 40]] = False
    fig = figures.measurement_path_figure(x, y, ok, (0.0, 50.0, 0.0, 30.0))
    ax = fig.axes[0]
    measured, failed = _offsets(ax)
    assert len(measured) == 88 and len(failed) == 2 and not ax.images
    np.testing.assert_allclose(failed, np.column_stack([x, y])[~ok])
    numbers = [int(t.get_text()) for t in ax.texts]
    assert numbers[0] == 1 and 20 <= len(numbers) <= figures.MAX_NUMBERED  # long paths: every k-th numbered
    assert ax.get_ylim() == (30.0, 0.0)  # y downwards, as in an overview image
    maps = figures.property_maps_figure(x, y, x + y, np.full(90, 0.5), ok, "gap")
    for ax in maps.axes[:2]:
        assert not ax.images and len(_offsets(ax)[0]) == 90
    grid_x, grid_y = (a.ravel() for a in np.meshgrid(np.arange(4.0), np.arange(3.0)))
    image = figures.property_maps_figure(grid_x, grid_y, grid_x * 10 + grid_y, grid_x, grid_x > 1, "gap").axes[0].images[0]
    np.testing.assert_array_equal(image.get_array(), (np.arange(4.0)[None, :] * 10 + np.arange(3.0)[:, None]))
    assert image.get_extent() == [-0.5, 3.5, 2.5, -0.5]
