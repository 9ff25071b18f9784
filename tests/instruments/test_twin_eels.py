"""The STEM-EELS digital twin: deterministic, spectra that follow the local structure, drift,
beam damage, and the accounting of dose, time and latency."""

from __future__ import annotations

import numpy as np
import pytest

from activescope.engine.registry import INSTRUMENTS
from activescope.instruments.protocol import ELECTRON_C, BudgetExhausted
from activescope.instruments.scalarizers import band_integral, peak_position
from activescope.instruments.twin import DigitalTwin, DriftModel


def test_the_same_seed_gives_the_same_twin_and_another_seed_another(small_twin):
    a, b, c = small_twin(seed=5), small_twin(seed=5), small_twin(seed=6)
    np.testing.assert_array_equal(a.overview().image, b.overview().image)
    np.testing.assert_array_equal(a.acquire(0.3, 0.4).values, b.acquire(0.3, 0.4).values)
    assert not np.array_equal(a.sample.image, c.sample.image)


def test_the_overview_is_the_simulated_lattice_with_shot_noise(small_twin):
    twin = small_twin(overview_counts=1e6)
    image = twin.overview().image
    m = twin.sample.margin
    clean = twin.sample.image[m:m + 48, m:m + 48] * 1e6
    assert np.corrcoef(image.ravel(), clean.ravel())[0, 1] > 0.99
    noisy = small_twin(overview_counts=5.0).overview().image
    assert np.all(noisy == np.round(noisy))  # Poisson counts


def test_spectra_follow_the_local_structure(small_twin):
    twin = small_twin(counts_per_s=1e6)
    truth = twin.truth_maps()
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 48, 60), rng.integers(0, 48, 60)
    crystal = truth["density"][rows, cols] > 0.5
    rows, cols = rows[crystal], cols[crystal]
    xs, ys = twin.describe().geometry.to_nm(cols, rows)
    peak = peak_position(low=10.0, high=32.0, smooth=9)
    measured = np.array([peak(twin.acquire(x, y).as_raw()) for x, y in zip(xs, ys)])
    expected = truth["plasmon_ev"][rows, cols]
    assert expected.max() - expected.min() > 1.0  # defects, dopants and the boundary shift the peak
    assert np.corrcoef(measured, expected)[0, 1] > 0.95
    assert np.abs(measured - expected).mean() < 0.2


def test_dopants_raise_an_edge_and_vacuum_has_no_plasmon(small_twin):
    twin = small_twin(counts_per_s=1e6)
    truth = twin.truth_maps()
    g = twin.describe().geometry
    crystal = truth["density"] > 0.9
    doped = np.unravel_index(np.argmax(np.where(crystal, truth["dopant"], -1)), truth["dopant"].shape)
    clean = np.unravel_index(np.argmin(np.where(crystal, truth["dopant"], np.inf)), truth["dopant"].shape)
    vacuum = np.unravel_index(np.argmin(truth["density"]), truth["density"].shape)
    edge, plasmon = band_integral(low=36.0, high=45.0), band_integral(low=15.0, high=30.0)

    def measure(row_col):
        return twin.acquire(*(float(v) for v in g.to_nm(row_col[1], row_col[0]))).as_raw()

    assert truth["dopant"][doped] > 0.5 and truth["dopant"][clean] < 0.1
    assert edge(measure(doped)) > 2.0 * edge(measure(clean))
    assert truth["density"][vacuum] < 0.2
    assert plasmon(measure(vacuum)) < 0.3 * plasmon(measure(clean))


def test_the_probe_lands_at_the_requested_position_plus_drift(small_twin):
    twin = small_twin(drift_velocity_nm_s=(0.02, -0.01), overhead_s=0.5)
    for _ in range(5):
        twin.acquire(0.6, 0.6)
    state = twin.state()
    assert state.elapsed_s == pytest.approx(5 * (0.5 + twin.options.dwell_s))
    assert state.drift_nm == pytest.approx((0.02 * state.elapsed_s, -0.01 * state.elapsed_s))
    # a still twin probed at the drifted position measures what the drifting one measured
    still = small_twin(overhead_s=0.5, counts_per_s=1e9)
    moving = small_twin(drift_velocity_nm_s=(0.02, -0.01), overhead_s=0.5, counts_per_s=1e9)
    spectrum = moving.acquire(0.6, 0.6)
    t = 0.5 + twin.options.dwell_s / 2.0
    expected = still.acquire(0.6 + 0.02 * t, 0.6 - 0.01 * t)
    np.testing.assert_allclose(spectrum.values, expected.values, rtol=1e-3)


def test_the_random_walk_does_not_depend_on_which_times_are_asked():
    times = np.linspace(0.0, 900.0, 37)
    forward = np.array([DriftModel((0.01, 0.0), 0.01, seed=4)(t) for t in times])
    model = DriftModel((0.01, 0.0), 0.01, seed=4)
    backward = np.array([model(t) for t in times[::-1]])[::-1]
    np.testing.assert_allclose(forward, backward)
    assert np.abs(forward[:, 1]).max() > 0  # the walk moves y although the linear part is along x


def test_beam_damage_lowers_the_plasmon_where_the_beam_dwelt(small_twin):
    plasmon = band_integral(low=15.0, high=30.0)
    damaged = small_twin(damage=True, critical_dose_e_nm2=1e9, counts_per_s=1e6)
    intact = small_twin(damage=False, counts_per_s=1e6)
    for twin, falls in ((damaged, True), (intact, False)):
        first = plasmon(twin.acquire(0.6, 0.6).as_raw())
        for _ in range(20):
            last = plasmon(twin.acquire(0.6, 0.6).as_raw())
        assert (last < 0.8 * first) is falls
    g = damaged.describe().geometry
    col, row = g.nearest_pixel(0.6, 0.6)
    ratio = damaged.overview().image / np.maximum(intact.overview().image, 1)
    assert ratio[row - 1:row + 2, col - 1:col + 2].mean() < 0.7
    assert ratio[:5, :5].mean() > 0.9


def test_dose_time_and_latency_are_accounted(small_twin):
    twin = small_twin(beam_current_pa=20.0, dwell_s=0.02, overhead_s=0.1, overview_s=1.5, latency_s=0.001)
    twin.overview()
    for _ in range(3):
        twin.acquire(0.5, 0.5)
    state = twin.state()
    per_s = 20e-12 / ELECTRON_C
    assert state.dose_e == pytest.approx(per_s * (1.5 + 3 * 0.02))
    assert state.elapsed_s == pytest.approx(1.5 + 3 * (0.02 + 0.1 + 0.001))
    assert state.latency_s == pytest.approx(0.003)


def test_the_time_budget_refuses_before_measuring(small_twin):
    twin = small_twin(time_budget_s=1.05, overview_s=0.8, overhead_s=0.0, dwell_s=0.1)
    twin.overview()
    twin.acquire(0.5, 0.5)
    twin.acquire(0.5, 0.5)
    with pytest.raises(BudgetExhausted, match="time budget of 1.05 s"):
        twin.acquire(0.5, 0.5)
    with pytest.raises(BudgetExhausted):
        twin.overview()
    assert twin.state().acquisitions == 2 and twin.state().elapsed_s == pytest.approx(1.0)


@pytest.mark.parametrize("options, words", [
    ({"lattice": "diamond"}, "unknown lattice"),
    ({"e_min_ev": 30.0, "e_max_ev": 20.0}, "e_max_ev must be larger"),
    ({"size": 8}, "size"),
    ({"colour": "red"}, "unknown field"),
])
def test_bad_twin_options_are_one_line_errors(options, words):
    with pytest.raises(ValueError, match=words) as err:
        INSTRUMENTS.validate("twin", options, "instrument")
    assert str(err.value).startswith("instrument.") and "\n" not in str(err.value)


def test_the_twin_is_a_registered_instrument():
    twin = INSTRUMENTS.build("twin", {"seed": 1, "size": 32, "channels": 64, "latency_s": 0.0}, section="instrument")
    assert isinstance(twin, DigitalTwin) and twin.describe().channels == 64
