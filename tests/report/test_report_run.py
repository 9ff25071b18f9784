"""report_run on real tiny QM9 campaigns: one self-contained HTML file with every section."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from activescope.engine.campaign import Campaign
from activescope.engine.pool import Pool
from activescope.engine.spec import parse_spec
from activescope.engine.store import Store
from activescope.report import report_run

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|file:)|<link\b|<script\b|@import|url\(""", re.I)
FIGURES = ("best_so_far", "recall", "parity", "latent", "timings")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_pool):
    spec = {
        "name": "tiny-report", "seed": 0,
        "data": {"source": "qm9", "subset": 600, "features": ["physics"]},
        "target": {"column": "Dipole_debye", "goal": "maximize"},
        "model": {"kind": "dkl", "latent_dim": 3, "fit_iters": 30, "warm_iters": 10},
        "acquisition": {"kind": "ucb", "q": 10},
        "initial": {"n": 20}, "stop": {"budget": 40},
    }
    run_dir = tmp_path_factory.mktemp("report") / "run"
    Campaign.create(run_dir, parse_spec(spec), small_pool).run(progress=False)
    return run_dir, report_run(run_dir, pool=small_pool)


def test_report_is_one_self_contained_html_file(finished_run):
    run_dir, path = finished_run
    assert path == run_dir / "artifacts" / "report.html"
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not EXTERNAL.search(page)
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    for name in FIGURES:
        assert (run_dir / "artifacts" / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_report_has_every_section_with_real_numbers(finished_run, small_pool):
    run_dir, path = finished_run
    page = path.read_text()
    for anchor in ("summary", "progress", "parity", "latent", "best", "timings"):
        assert f'<section id="{anchor}">' in page
    assert "Dipole_debye" in page and "tiny-report" in page
    assert "R² =" in page and "within ±2σ" in page
    assert "fitted on the 40 measurements only for this map" in page  # the campaign's latent is 3-D
    store = Store.open(run_dir)
    found = store.measurements()["value"].max()
    store.close()
    truth = small_pool.labels["Dipole_debye"].to_numpy()
    top_row = re.search(r'<section id="best">.*?<tbody><tr>(.*?)</tr>', page, re.S).group(1)
    assert top_row.count("<svg") == 1  # the molecule drawing of the best candidate
    rank, value, _, pool_rank = re.findall(r'<td class="num">([-\d.,]+)</td>', top_row)
    assert (rank, float(value)) == ("1", float(f"{found:.4g}"))
    assert int(pool_rank) == int((truth > found).sum()) + 1


def test_report_without_labels_skips_recall_and_parity(tmp_path, small_pool):
    """An ask/tell DKL campaign whose pool has no labels: progress, its own latent map and the best
    table, but no random baseline or parity."""
    pool = Pool(ids=small_pool.ids, X=small_pool.X, info=small_pool.info)
    spec = parse_spec({
        "name": "lab", "data": {"source": "qm9", "subset": 600, "features": ["physics"]},
        "target": {"column": "yield", "goal": "maximize"}, "model": {"kind": "dkl", "fit_iters": 30},
        "oracle": {"kind": "asktell"}, "acquisition": {"q": 5}, "initial": {"n": 10}, "stop": {"budget": 15},
    })
    campaign = Campaign.create(tmp_path / "lab", spec, pool)
    rng = np.random.default_rng(0)
    suggestion = campaign.suggest()
    while suggestion is not None:
        batch = pd.read_csv(suggestion)
        results = tmp_path / "results.csv"
        pd.DataFrame({"id": batch["id"], "value": rng.normal(size=len(batch))}).to_csv(results, index=False)
        suggestion = campaign.tell_csv(results)[1]
    page = report_run(tmp_path / "lab", pool=pool).read_text()
    assert '<section id="progress">' in page and '<section id="best">' in page
    assert "has no &#x27;yield&#x27; labels" in page
    assert '<section id="parity">' not in page and 'alt="recall"' not in page
    assert "from the campaign&#x27;s own model (&#x27;dkl&#x27;, 2-D latent)" in page
    assert "coloured by predicted yield" in page
