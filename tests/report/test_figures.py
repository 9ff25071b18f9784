import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from activescope.report import figures
from activescope.report.html import image, key_value_table, page, table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _lines(fig: Figure) -> list[np.ndarray]:
    return [line.get_ydata() for ax in fig.axes for line in ax.get_lines()]


def test_best_so_far_figure_draws_campaign_and_exact_random():
    pool = np.arange(100.0)
    measured = np.array([3.0, 50.0, 20.0, 99.0])
    fig = figures.best_so_far_figure(measured, pool, "maximize", "Dipole_debye", n_initial=2)
    ys = _lines(fig)
    np.testing.assert_allclose(ys[0], [3, 50, 50, 99])
    np.testing.assert_allclose(ys[1][0], pool.mean())  # one random draw: the pool mean
    assert fig.axes[0].get_ylabel() == "best Dipole_debye so far"
    assert figures.figure_png(fig).startswith(PNG_MAGIC)


def test_recall_figure_has_one_panel_per_k():
    pool = np.arange(1000.0)
    measured = np.arange(999.0, 979.0, -1)
    fig = figures.recall_figure(measured, pool, "maximize", {"top-10": 10, "top-1%": 10})
    assert len(fig.axes) == 2
    campaign, random = _lines(fig)[:2]
    assert campaign[9] == 1.0 and np.isclose(random[9], 10 / 1000)


def test_parity_latent_timing_and_strategy_figures_render():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    stats = {"r2": 0.9, "mae": 0.1, "coverage_2sd": 0.95}
    figs = [
        figures.parity_figure(y, y + 0.1 * rng.normal(size=300), np.full(300, 0.01), stats, "gap"),
        figures.latent_figure(rng.normal(size=(300, 2)), y, rng.random(300), np.arange(300) < 20, "gap"),
        figures.timings_figure(pd.DataFrame({"round": [0, 1, 2], "fit_s": [np.nan, 1.0, 2.0], "measure_s": [0.1] * 3})),
        figures.strategy_recall_figure({"top-100": {"a": rng.random((2, 50))}}, {"top-100": np.linspace(0, 0.1, 50)}, 10),
    ]
    for fig in figs:
        assert figures.figure_png(fig).startswith(PNG_MAGIC)
    calibration = figs[0].axes[1].get_lines()[0].get_ydata()
    assert calibration[0] == 0.0 and calibration[-1] <= 1.0 and np.all(np.diff(calibration) >= 0)


def test_molecule_svg_inline_or_none():
    svg = figures.molecule_svg("c1ccccc1O")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert figures.molecule_svg("not a smiles") is None


def test_html_page_escapes_text_and_embeds_images():
    frame = pd.DataFrame({"id": ["<b>x</b>"], "value": [1.23456], "drawing": ["<svg></svg>"]})
    body = table(frame, raw_html_columns=["drawing"]) + key_value_table({"n": 1200}) + image(PNG_MAGIC, "a", "cap")
    doc = page("T & co", "sub", [("s", "Section", body)])
    assert "&lt;b&gt;x&lt;/b&gt;" in doc and "<svg></svg>" in doc
    assert "1.235" in doc and "1,200" in doc
    assert 'src="data:image/png;base64,' in doc
    assert "T &amp; co" in doc
