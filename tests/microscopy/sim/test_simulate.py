"""Simulator: determinism, label/table consistency, physics of noise, defects and geometry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from activescope.engine.errors import SpecError
from activescope.microscopy.sim.lattices import LATTICES, lattice_classes
from activescope.microscopy.sim.simulate import (
    SimConfig,
    frame_seeds,
    simulate_batch,
    simulate_frame,
)

QUIET = dict(dose=float("inf"), read_noise=0.0, background=0.0, jitter=0.0, drift=0.0)


def test_same_seed_gives_identical_frame_and_other_seed_differs() -> None:
    config = SimConfig(size=96)
    a, b, c = simulate_frame(config, 7), simulate_frame(config, 7), simulate_frame(config, 8)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels, b.labels)
    assert a.atoms.equals(b.atoms)
    assert not np.array_equal(a.image, c.image)


def test_frame_types_and_normalisation() -> None:
    frame = simulate_frame(SimConfig(size=64), 0)
    assert frame.image.shape == frame.labels.shape == (64, 64)
    assert frame.image.dtype == np.float32 and frame.labels.dtype == np.uint8
    assert abs(float(frame.image.mean())) < 1e-4 and abs(float(frame.image.std()) - 1.0) < 1e-3
    assert list(frame.atoms.columns) == ["x", "y", "cls", "Z", "name"]


@pytest.mark.parametrize("lattice", LATTICES)
def test_atom_table_matches_label_mask(lattice: str) -> None:
    config = SimConfig(lattice=lattice, size=80, jitter=0.5, drift=3.0, dopant_prob=0.1)
    frame = simulate_frame(config, 3)
    atoms = frame.atoms
    col, row = np.rint(atoms["x"]).astype(int), np.rint(atoms["y"]).astype(int)
    assert ((col >= 0) & (col < 80) & (row >= 0) & (row < 80)).all()
    assert np.array_equal(frame.labels[row, col], atoms["cls"].to_numpy())
    # every labelled pixel lies within the disk radius of an atom of its own class
    radius_px = max(config.label_radius / frame.params["pixel_size"], 1.0)
    ys, xs = np.nonzero(frame.labels)
    distance, nearest = cKDTree(atoms[["x", "y"]].to_numpy()).query(np.column_stack([xs, ys]))
    assert (distance <= radius_px + 1e-9).all()
    assert np.array_equal(atoms["cls"].to_numpy()[nearest], frame.labels[ys, xs])


def test_each_lattice_has_its_physical_column_classes() -> None:
    expected = {
        "graphene": (["background", "C", "dopant"], {"C", "Si"}),
        "mos2": (["background", "metal", "chalcogen", "dopant"], {"Mo", "S2", "W"}),
        "ws2": (["background", "metal", "chalcogen", "dopant"], {"W", "S2", "Mo"}),
        "srtio3": (["background", "Sr", "Ti-O", "O", "dopant"], {"Sr", "TiO", "O", "La"}),
        "srtio3_110": (["background", "Sr-O", "Ti", "O", "dopant"], {"SrO", "Ti", "O2", "LaO"}),
    }
    for lattice, (classes, names) in expected.items():
        assert lattice_classes(lattice) == classes
        frame = simulate_frame(SimConfig(lattice=lattice, size=128, dopant_prob=0.2,
                                         vacancy_prob=0.0), 1)
        assert frame.classes == classes
        assert set(frame.atoms["cls"]) == set(range(1, len(classes)))
        assert set(frame.atoms["name"]) == names
        by_name = frame.atoms.groupby("name")["cls"].unique()
        assert all(len(c) == 1 for c in by_name)
    assert simulate_frame(SimConfig(lattice="mos2", size=64, vacancy_prob=0.0), 0).atoms.query(
        "name == 'S2'")["Z"].eq(32).all()


def test_higher_dose_gives_higher_snr() -> None:
    base = dict(size=96, read_noise=0.0, background=0.0, jitter=0.0, drift=0.0)
    clean = simulate_frame(SimConfig(**base, dose=float("inf")), 5).image.ravel()

    def correlation(dose: float) -> float:
        noisy = simulate_frame(SimConfig(**base, dose=dose), 5).image.ravel()
        return float(np.corrcoef(noisy, clean)[0, 1])

    low, high = correlation(200.0), correlation(2e5)
    assert low < high < 1.0
    assert high > 0.99 and low < 0.9


def test_defects_appear_at_configured_rates() -> None:
    config = dict(lattice="mos2", size=512, pixel_size=0.2, rotation=False, **QUIET)
    perfect = simulate_frame(SimConfig(**config, vacancy_prob=0.0, dopant_prob=0.0), 2).atoms
    p_vac, p_dop = 0.1, 0.05
    defective = simulate_frame(SimConfig(**config, vacancy_prob=p_vac, dopant_prob=p_dop), 2).atoms
    n_metal = (perfect["name"] == "Mo").sum()
    n_chalcogen = (perfect["name"] == "S2").sum()
    assert n_metal > 1000 and n_chalcogen > 1000
    metal_left = defective["name"].isin(["Mo", "W"]).sum() / n_metal
    assert abs(metal_left - (1 - p_vac)) < 0.04
    dopant_share = (defective["name"] == "W").sum() / defective["name"].isin(["Mo", "W"]).sum()
    assert abs(dopant_share - p_dop) < 0.025
    half_columns = (defective["name"] == "S").sum() / n_chalcogen
    assert abs(half_columns - 2 * p_vac * (1 - p_vac)) < 0.04
    assert defective.loc[defective["name"] == "S", "cls"].eq(2).all()


def test_lattice_spacing_and_strain_in_pixels() -> None:
    config = dict(lattice="graphene", size=128, pixel_size=0.1, rotation=False, vacancy_prob=0.0,
                  dopant_prob=0.0, **QUIET)
    for strain in (0.0, 0.05):
        atoms = simulate_frame(SimConfig(**config, strain=strain), 0).atoms
        distance, _ = cKDTree(atoms[["x", "y"]].to_numpy()).query(atoms[["x", "y"]].to_numpy(), k=2)
        carbon_carbon_px = 2.46 / np.sqrt(3) * (1 + strain) / 0.1
        assert np.allclose(distance[:, 1], carbon_carbon_px, atol=1e-6)


def test_atom_table_follows_image_under_drift_and_jitter() -> None:
    config = SimConfig(lattice="ws2", size=128, dose=float("inf"), read_noise=0.0,
                       background=0.0, jitter=0.6, drift=4.0, vacancy_prob=0.0)
    frame = simulate_frame(config, 11)
    metal = frame.atoms[(frame.atoms["cls"] == 1)
                        & frame.atoms["x"].between(6, 121) & frame.atoms["y"].between(6, 121)]
    offsets = np.arange(-3, 4)
    oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
    col = np.rint(metal["x"].to_numpy()).astype(int)[:, None] + ox.ravel()
    row = np.rint(metal["y"].to_numpy()).astype(int)[:, None] + oy.ravel()
    patch = frame.image[row, col]
    weight = patch - patch.min(axis=1, keepdims=True)
    cx = (weight * col).sum(axis=1) / weight.sum(axis=1)
    cy = (weight * row).sum(axis=1) / weight.sum(axis=1)
    error = np.hypot(cx - metal["x"].to_numpy(), cy - metal["y"].to_numpy())
    assert np.median(error) < 0.35 and error.max() < 1.0


def test_batch_matches_single_frames() -> None:
    config = SimConfig(size=48)
    images, labels, atoms = simulate_batch(config, 3, seed=4)
    assert images.shape == labels.shape == (3, 48, 48)
    assert images.dtype == np.float32 and labels.dtype == np.uint8
    second = simulate_frame(config, int(frame_seeds(4, 3)[1]))
    assert np.array_equal(images[1], second.image)
    assert atoms[1].equals(second.atoms)


@pytest.mark.parametrize("bad", [dict(lattice="diamond"), dict(vacancy_prob=1.5),
                                 dict(pixel_size=(0.2, 0.1)), dict(size=4), dict(strain=-1.0),
                                 dict(dose=0.0), dict(jitter=-0.1)])
def test_bad_config_raises_spec_error(bad: dict) -> None:
    with pytest.raises(SpecError):
        simulate_frame(SimConfig(**bad), 0)


@pytest.mark.parametrize("n", [0, -1])
def test_a_batch_needs_at_least_one_frame(n: int) -> None:
    with pytest.raises(SpecError, match=f"at least 1, got {n}"):
        frame_seeds(0, n)
    with pytest.raises(SpecError, match=f"at least 1, got {n}"):
        simulate_batch(SimConfig(size=16), n, seed=0)
