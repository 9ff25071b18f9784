"""Multislice validation frames: the pure-NumPy parts, and a clear error without abTEM."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import ndimage

from activescope.engine.errors import SpecError
from activescope.microscopy.sim import multislice
from activescope.microscopy.sim.multislice import CellImage, apply_dose, tile_cell

# the orthogonal MoS2 cell abTEM builds (a = 3.18 Å): Mo at two corners of the rectangle's
# halves, S2 columns between them (positions in Å)
LENGTHS = (3.18, 3.18 * np.sqrt(3.0))
COLUMNS = np.array([[0.0, 0.0], [0.0, 3.6719], [1.59, 0.9180], [1.59, 2.7540]])
CLASSES = np.array([1, 2, 2, 1])
Z = np.array([[42, 0], [16, 16], [16, 16], [42, 0]])


def _synthetic_cell(ratio: float = 0.5, sampling: float = 0.1) -> CellImage:
    """A periodic 'HAADF' cell: Gaussian columns, chalcogen at ``ratio`` of the metal."""
    nx, ny = int(round(LENGTHS[0] / sampling)), int(round(LENGTHS[1] / sampling))
    x = np.arange(nx) * LENGTHS[0] / nx
    y = np.arange(ny) * LENGTHS[1] / ny
    image = np.zeros((ny, nx))
    for (cx, cy), cls in zip(COLUMNS, CLASSES):
        dx = (x[None, :] - cx + LENGTHS[0] / 2) % LENGTHS[0] - LENGTHS[0] / 2
        dy = (y[:, None] - cy + LENGTHS[1] / 2) % LENGTHS[1] - LENGTHS[1] / 2
        image += (1.0 if cls == 1 else ratio) * np.exp(-(dx**2 + dy**2) / (2 * 0.3**2))
    return CellImage(image + 0.01, LENGTHS, COLUMNS, CLASSES, Z,
                     ["background", "metal", "chalcogen", "dopant"])


@pytest.mark.parametrize("rotation", [0.0, 37.0])
def test_tiled_frame_has_its_columns_at_the_image_peaks(rotation: float) -> None:
    image, labels, atoms = tile_cell(_synthetic_cell(), 96, 0.1, rotation, (0.7, 1.3))
    assert image.shape == labels.shape == (96, 96)
    row, col = np.rint(atoms["y"]).astype(int), np.rint(atoms["x"]).astype(int)
    peaks = ndimage.maximum_filter(image, size=5)
    interior = (row > 3) & (row < 92) & (col > 3) & (col < 92)
    assert np.allclose(image[row, col][interior], peaks[row, col][interior], rtol=0.05)
    assert np.array_equal(labels[row, col], atoms["cls"].to_numpy())
    assert set(atoms["name"]) == {"Mo", "S2"}
    value = image[row, col][interior]
    cls = atoms["cls"].to_numpy()[interior]
    assert value[cls == 2].mean() / value[cls == 1].mean() == pytest.approx(0.5, abs=0.05)
    # columns per area match the crystal: 4 per orthogonal cell
    expected = 4 * (96 * 0.1) ** 2 / (LENGTHS[0] * LENGTHS[1])
    assert len(atoms) == pytest.approx(expected, rel=0.1)


def test_pixel_size_scales_the_column_spacing() -> None:
    from scipy.spatial import cKDTree

    for pixel_size in (0.08, 0.16):
        _, _, atoms = tile_cell(_synthetic_cell(), 96, pixel_size)
        metal = atoms[atoms["cls"] == 1][["x", "y"]].to_numpy()
        spacing = np.median(cKDTree(metal).query(metal, k=2)[0][:, 1])
        assert spacing * pixel_size == pytest.approx(3.18, rel=0.02)


def test_dose_adds_poisson_noise_and_standardises() -> None:
    clean, _, _ = tile_cell(_synthetic_cell(), 64, 0.1)
    rng = np.random.default_rng(0)
    exact = apply_dose(clean, float("inf"), rng)
    assert abs(float(exact.mean())) < 1e-4 and float(exact.std()) == pytest.approx(1.0, rel=1e-3)
    low = apply_dose(clean, 2.0, np.random.default_rng(1))
    high = apply_dose(clean, 50.0, np.random.default_rng(1))
    corr = [np.corrcoef(exact.ravel(), im.ravel())[0, 1] for im in (low, high)]
    assert corr[0] < corr[1] < 1.0
    with pytest.raises(SpecError):
        apply_dose(clean, 0.0, rng)


def test_missing_abtem_gives_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "abtem", None)
    multislice.multislice_cell.cache_clear()
    with pytest.raises(ImportError, match=r"pip install 'activescope\[multislice\]'"):
        multislice.multislice_frame("mos2", size=32)


def test_unsupported_material_is_rejected() -> None:
    with pytest.raises(SpecError, match="multislice frames support"):
        multislice.multislice_cell("srtio3")
