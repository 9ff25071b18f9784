"""Atom finder: recovers simulated atoms from exact probability maps; batching, edges, I/O."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from activescope.engine.errors import DataError
from activescope.microscopy.find.locate import (
    find_atoms,
    one_hot,
    read_atoms,
    save_atoms,
)
from activescope.microscopy.find.metrics import match_atoms
from activescope.microscopy.find.overlay import save_overlay
from activescope.microscopy.io import read_image
from activescope.microscopy.sim.simulate import (
    SimConfig,
    simulate_batch,
    simulate_frame,
)


def _blob_map(centres: list[tuple[float, float, float]], shape: tuple[int, int] = (40, 40),
              sigma: float = 1.5, n_classes: int = 2) -> np.ndarray:
    """Two-or-more-class probability map with Gaussian foreground blobs (x, y, peak)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    fg = np.zeros(shape)
    for x, y, peak in centres:
        fg = np.maximum(fg, peak * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2)))
    prob = np.zeros((n_classes, *shape), dtype=np.float32)
    prob[0], prob[1] = 1.0 - fg, fg
    return prob


@pytest.mark.parametrize("lattice", ["graphene", "srtio3"])
def test_exact_probability_map_recovers_every_atom(lattice: str) -> None:
    frame = simulate_frame(SimConfig(lattice=lattice, size=128, dopant_prob=0.1), 2)
    found = find_atoms(one_hot(frame.labels, len(frame.classes)))
    result = match_atoms(found, frame.atoms, tol_px=1.5)
    assert result.f1 == 1.0 and result.class_accuracy == 1.0
    # disks clipped by the frame edge shift centroids; inside, only pixelation remains
    interior = (frame.atoms["x"].between(4, 123) & frame.atoms["y"].between(4, 123)).to_numpy()
    inner_distance = result.distance[interior[result.true_index]]
    assert np.sqrt(np.mean(inner_distance**2)) < 0.25
    assert (found["score"] == 1.0).all() and (found["class_score"] == 1.0).all()


def test_batch_gives_frame_column_and_equals_single_frames() -> None:
    _, labels, atoms = simulate_batch(SimConfig(lattice="mos2", size=64), 3, seed=1)
    prob = one_hot(labels, 4)
    batch = find_atoms(prob)
    assert list(batch["frame"].unique()) == [0, 1, 2]
    for k in range(3):
        single = find_atoms(prob[k])
        assert "frame" not in single
        part = batch[batch["frame"] == k].drop(columns="frame").reset_index(drop=True)
        pd.testing.assert_frame_equal(part, single)
        assert len(single) == len(atoms[k])


def test_refined_position_is_sub_pixel() -> None:
    prob = _blob_map([(12.3, 20.7, 0.95), (27.6, 9.2, 0.9)])
    found = find_atoms(prob, threshold=0.3).sort_values("x")
    assert np.allclose(found[["x", "y"]], [[12.3, 20.7], [27.6, 9.2]], atol=0.04)
    pixel_only = find_atoms(prob, threshold=0.3, refine=False).sort_values("x")
    assert np.abs(pixel_only[["x", "y"]].to_numpy() - [[12.3, 20.7], [27.6, 9.2]]).max() > 0.04
    # the score is the brightest pixel, just below the off-grid peak of each blob
    assert np.all((found["score"] <= [0.95, 0.9]) & (found["score"] > [0.90, 0.85]))


def test_threshold_edges_and_min_distance() -> None:
    prob = _blob_map([(2.0, 20.0, 0.9), (20.0, 20.0, 0.9), (30.0, 30.0, 0.4)])
    assert len(find_atoms(prob, threshold=0.5)) == 2
    assert len(find_atoms(prob, threshold=0.3)) == 3
    assert find_atoms(prob, threshold=0.5, edge_px=4)["x"].tolist() == pytest.approx([20.0])
    close = _blob_map([(15.0, 20.0, 0.95), (19.0, 20.0, 0.7)], sigma=0.6)
    assert len(find_atoms(close, threshold=0.5, min_distance_px=2)) == 2
    kept = find_atoms(close, threshold=0.5, min_distance_px=5)
    assert kept["x"].tolist() == pytest.approx([15.0], abs=0.01)
    assert len(find_atoms(close, threshold=0.5, min_distance_px=0)) == 2
    with pytest.raises(DataError, match="at least 0 pixels, got -1"):
        find_atoms(close, min_distance_px=-1)


def test_class_vote_uses_summed_class_probability() -> None:
    prob = _blob_map([(20.0, 20.0, 0.9)], n_classes=3)
    prob[2] = 0.6 * prob[1]
    prob[1] *= 0.4
    found = find_atoms(prob)
    assert found["cls"].tolist() == [2]
    assert found["class_score"].iloc[0] == pytest.approx(0.6, abs=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((8, 8)), np.zeros((1, 8, 8)),
                                 np.full((2, 8, 8), np.nan)])
def test_bad_probability_maps_raise(bad: np.ndarray) -> None:
    with pytest.raises(DataError):
        find_atoms(bad)
    with pytest.raises(DataError, match="threshold"):
        find_atoms(np.ones((2, 8, 8)) / 2, threshold=1.0)


def test_atom_tables_round_trip_as_csv(tmp_path: Path) -> None:
    table = find_atoms(_blob_map([(10.0, 10.0, 0.9), (30.0, 25.0, 0.8)]))
    back = read_atoms(save_atoms(table, tmp_path / "atoms.csv"))
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    with pytest.raises(DataError):
        save_atoms(table, tmp_path / "atoms.xlsx")
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(DataError, match="pyarrow"):
            save_atoms(table, tmp_path / "atoms.parquet")
    else:
        parquet = read_atoms(save_atoms(table, tmp_path / "atoms.parquet"))
        pd.testing.assert_frame_equal(parquet, table)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks"):
        read_atoms(tmp_path / "bad.csv")


def test_overlay_png_is_written(tmp_path: Path) -> None:
    frame = simulate_frame(SimConfig(lattice="mos2", size=64), 0)
    atoms = frame.atoms.assign(spread=np.linspace(0.0, 1.0, len(frame.atoms)))
    path = save_overlay(frame.image, atoms, tmp_path / "overlay.png", classes=frame.classes,
                        uncertainty="spread", title="MoS2")
    image, meta = read_image(path)
    assert meta["format"] == "png" and image.shape[0] > 100
    with pytest.raises(DataError):
        save_overlay(frame.image, atoms.drop(columns="x"), tmp_path / "bad.png")
