"""Domain randomisation of the simulator: defaults unchanged, every knob does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from activescope.engine.errors import SpecError
from activescope.microscopy.sim import simulate as sim
from activescope.microscopy.sim.simulate import (
    RANDOMIZATION,
    SimConfig,
    column_intensities,
    randomized_config,
    simulate_frame,
)

QUIET = dict(dose=float("inf"), read_noise=0.0, background=0.0, jitter=0.0, drift=0.0,
             vacancy_prob=0.0, dopant_prob=0.0)


def _peak_ratio(frame) -> float:
    """Mean chalcogen / metal column brightness above the frame's minimum (noise-free frame)."""
    image = frame.image - frame.image.min()
    atoms = frame.atoms
    value = image[np.rint(atoms["y"]).astype(int), np.rint(atoms["x"]).astype(int)]
    cls = atoms["cls"].to_numpy()
    return float(value[cls == 2].mean() / value[cls == 1].mean())


@pytest.mark.parametrize("exponent", [1.44, 1.7, 2.0])
def test_contrast_exponent_sets_the_sublattice_ratio(exponent: float) -> None:
    config = SimConfig(lattice="mos2", size=96, pixel_size=0.1, probe_fwhm=0.5,
                       potential_sigma=0.1, contrast_exponent=exponent, **QUIET)
    expected = 2.0 * (16.0 / 42.0) ** exponent  # S2 / Mo under I ∝ Σ Z^n
    assert _peak_ratio(simulate_frame(config, 4)) == pytest.approx(expected, abs=0.03)


def test_style_randomisation_keeps_geometry_and_is_seed_deterministic() -> None:
    plain = simulate_frame(SimConfig(lattice="mos2", size=96), 5)
    styled_config = randomized_config(lattice="mos2", size=96, probe_fwhm=(0.8, 1.0),
                                      background=(0.0, 0.3), read_noise=(0.0, 0.05),
                                      jitter=(0.0, 0.3))
    styled = simulate_frame(styled_config, 5)
    again = simulate_frame(styled_config, 5)
    assert np.array_equal(styled.image, again.image) and styled.atoms.equals(again.atoms)
    # the style stream is separate: same seed, same columns, defects, jitter and labels
    assert styled.atoms.equals(plain.atoms)
    assert np.array_equal(styled.labels, plain.labels)
    assert not np.allclose(styled.image, plain.image)


def test_randomized_ranges_are_drawn_per_frame_within_bounds() -> None:
    config = randomized_config(lattice="mos2", size=32)
    params = [simulate_frame(config, seed).params for seed in range(12)]
    for name, (low, high) in RANDOMIZATION.items():
        values = np.array([p[name] for p in params])
        assert ((values >= low) & (values <= high)).all(), name
        assert np.unique(values).size > 1, name
    factors = [p["class_factor"]["chalcogen"] / p["class_factor"]["metal"] for p in params]
    assert np.std(factors) > 0.01


def test_default_config_draws_no_style() -> None:
    params = simulate_frame(SimConfig(size=32), 0).params
    assert params["contrast_exponent"] == pytest.approx(1.7)
    for name in ("sublattice_jitter", "thickness", "column_jitter", "probe_ellipticity",
                 "probe_tail", "row_noise"):
        assert params[name] == 0.0
    # explicit defaults give the very same frame
    explicit = SimConfig(size=32, contrast_exponent=1.7, thickness=0.0, probe_tail=0.0)
    default = simulate_frame(SimConfig(size=32), 0)
    assert np.array_equal(simulate_frame(explicit, 0).image, default.image)


def test_thickness_saturates_bright_columns() -> None:
    z = np.array([[42, 0], [16, 16]])
    thin = column_intensities(z, z, 1.7, 0.0)
    thick = column_intensities(z, z, 1.7, 1.0)
    assert thin[0] == pytest.approx(1.0) and thick[0] == pytest.approx(1.0)
    assert thick[1] / thick[0] > thin[1] / thin[0] + 0.1


def test_sublattice_jitter_changes_the_ratio_between_frames() -> None:
    config = SimConfig(lattice="mos2", size=96, pixel_size=0.1, probe_fwhm=0.5,
                       potential_sigma=0.1, sublattice_jitter=0.3, **QUIET)
    ratios = [_peak_ratio(simulate_frame(config, seed)) for seed in range(4)]
    assert np.ptp(ratios) > 0.05


def _second_moments(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    w = image / image.sum()
    cx, cy = (w * cols).sum(), (w * rows).sum()
    return float((w * (cols - cx) ** 2).sum()), float((w * (rows - cy) ** 2).sum())


def test_elliptical_probe_and_tail_in_the_renderer() -> None:
    xy = np.array([[32.0, 32.0]])
    no_shift = np.zeros(64)
    round_ = sim._render(xy, np.ones(1), (64, 64), 2.0, no_shift)
    ellipse = sim._render(xy, np.ones(1), (64, 64), 2.0, no_shift, ellipticity=0.5, angle_deg=0.0)
    var_x, var_y = _second_moments(ellipse)
    assert var_x / var_y == pytest.approx(1.0 / 0.25, rel=0.05)  # axes σ/√(1-e) and σ√(1-e)
    assert ellipse.sum() == pytest.approx(round_.sum(), rel=1e-4)
    tail = sim._render(xy, np.ones(1), (64, 64), 2.0, no_shift, tail=0.3, tail_width=3.0)
    assert tail.sum() == pytest.approx(round_.sum(), rel=1e-3)  # same integral, lower peak
    assert tail.max() == pytest.approx(round_.max() * (0.7 + 0.3 / 9.0), rel=0.02)


def test_row_noise_adds_scan_line_offsets() -> None:
    base = dict(lattice="graphene", size=64, **QUIET)
    quiet = simulate_frame(SimConfig(**base), 2).image
    streaky = simulate_frame(SimConfig(row_noise=0.5, **base), 2).image
    # standardisation is affine and row offsets cancel along a row: fit the scale there, and
    # what is left of the streaky frame is one offset per row
    dq, ds = np.diff(quiet, axis=1).ravel(), np.diff(streaky, axis=1).ravel()
    residual = streaky - (dq @ ds / (dq @ dq)) * quiet
    assert np.abs(residual - residual.mean(axis=1, keepdims=True)).max() < 1e-3
    assert np.std(residual.mean(axis=1)) > 0.1


@pytest.mark.parametrize("field, value", [("contrast_exponent", -1.0), ("probe_ellipticity", 1.0),
                                          ("probe_tail", 1.5), ("thickness", -0.1),
                                          ("probe_tail_width", 0.5)])
def test_bad_style_settings_are_rejected(field: str, value: float) -> None:
    with pytest.raises(SpecError, match=field):
        simulate_frame(SimConfig(size=16, **{field: value}), 0)
