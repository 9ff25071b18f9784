"""Pixel size everywhere: frames resampled to the model's scale, positions mapped back, Å
columns, and the lattice-spacing check (library and `atoms find` / `--strict`)."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from activescope.cli import app
from activescope.microscopy.find.locate import (
    check_lattice_spacing,
    find_atoms,
    lattice_spacing_angstrom,
    nearest_neighbour_spacing,
    rescale_frame,
    to_original_pixels,
)
from activescope.microscopy.find.metrics import match_atoms
from activescope.microscopy.find.predict import Predictor
from activescope.microscopy.nets.checkpoint import read_card, save_checkpoint
from activescope.microscopy.sim.simulate import SimConfig, simulate_frame
from activescope.microscopy.training.trainer import TrainConfig, train_on_simulation

CLEAN = dict(probe_fwhm=0.9, dose=float("inf"), read_noise=0.0, jitter=0.0, drift=0.0,
             background=0.0, vacancy_prob=0.0, dopant_prob=0.0)
runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_at_0_1():
    """A tiny graphene finder trained on clean frames at 0.1 Å/px (about 8 s on one core)."""
    sim = SimConfig(lattice="graphene", size=96, pixel_size=0.1, **CLEAN)
    config = TrainConfig(steps=150, batch_size=8, crop_size=64, augment=False, seed=1)
    return train_on_simulation(sim, config, "lite_unet", {"base_filters": 8, "depth": 2},
                               val_frames=0, device="cpu")


@pytest.fixture(scope="module")
def checkpoint(model_at_0_1, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "graphene_0.1.safetensors"
    return save_checkpoint(path, model_at_0_1.model, model_at_0_1.card)


def _frame(lattice, pixel_size, seed=5, size=96):
    return simulate_frame(SimConfig(lattice=lattice, size=size, pixel_size=pixel_size, **CLEAN),
                          seed)


def _save_frame(folder, name, frame, pixel_size=None):
    path = folder / f"{name}.npy"
    np.save(path, frame.image)
    if pixel_size is not None:
        path.with_suffix(".json").write_text(json.dumps({"pixel_size_angstrom": pixel_size}))
    return path


def test_card_records_the_training_scale_and_lattice(model_at_0_1, checkpoint):
    card = read_card(checkpoint)
    assert card.pixel_size == pytest.approx(0.1)
    assert card.lattice == "graphene"
    assert card.lattice_spacing == pytest.approx(1.42, abs=0.01)


def test_rescaling_round_trips_positions_of_a_gaussian_blob():
    rows, cols = np.mgrid[0:60, 0:80]
    x0, y0 = 31.3, 22.7
    image = np.exp(-((cols - x0) ** 2 + (rows - y0) ** 2) / (2 * 3.0**2)).astype(np.float32)
    for factor in (2.0, 0.5, 1.37):
        scaled = rescale_frame(image, factor)
        assert scaled.shape == (round(60 * factor), round(80 * factor))
        prob = np.stack([1 - scaled / scaled.max(), scaled / scaled.max()])
        found = find_atoms(prob, threshold=0.3)
        back = to_original_pixels(found, image.shape, scaled.shape, pixel_size=0.2)
        assert len(back) == 1
        assert back["x"][0] == pytest.approx(x0, abs=0.1)
        assert back["y"][0] == pytest.approx(y0, abs=0.1)
        assert back["x_A"][0] == pytest.approx(0.2 * back["x"][0])


def test_frame_at_0_2_found_by_model_at_0_1_lands_on_the_truth(model_at_0_1):
    frame = _frame("graphene", 0.2)
    predictor = Predictor(model_at_0_1.model, model_at_0_1.card.classes, "cpu",
                          min_distance_px=5)
    seen = []
    original = predictor.probabilities
    predictor.probabilities = lambda images: seen.append(np.shape(images)) or original(images)
    atoms = predictor.find_at_scale(frame.image, 0.2, model_at_0_1.card.pixel_size)
    assert [shape[-2:] for shape in seen] == [(192, 192)]  # the network saw its own scale
    result = match_atoms(atoms, frame.atoms, tol_px=1.5)
    assert result.f1 > 0.95
    assert result.rmse_px < 0.3 and np.median(result.distance) < 0.25  # original pixels
    np.testing.assert_allclose(atoms["x_A"], atoms["x"] * 0.2)
    spacing = nearest_neighbour_spacing(atoms[["x", "y"]].to_numpy()) * 0.2
    assert spacing == pytest.approx(1.42, rel=0.05)


def test_lattice_spacing_check_on_true_atom_tables():
    graphene = lattice_spacing_angstrom("graphene")
    right = _frame("graphene", 0.12, size=128)
    assert check_lattice_spacing(right.atoms, 0.12, graphene) is None
    wrong_scale = check_lattice_spacing(right.atoms, 0.24, graphene)
    assert wrong_scale is not None and "+100%" in wrong_scale
    srtio3 = _frame("srtio3", 0.12, size=128)
    assert "differs from the model's lattice" in check_lattice_spacing(srtio3.atoms, 0.12,
                                                                       graphene)
    assert check_lattice_spacing(srtio3.atoms, 0.12, lattice_spacing_angstrom("srtio3")) is None
    few = check_lattice_spacing(pd.DataFrame({"x": [1.0, 9.0], "y": [2.0, 3.0]}), 0.1, graphene)
    assert "too few" in few


def test_find_rescales_and_writes_angstrom_columns_without_warning(checkpoint, tmp_path):
    frame = _frame("graphene", 0.2)
    path = _save_frame(tmp_path, "graphene_0.2", frame, pixel_size=0.2)
    result = _run("atoms", "find", path, "--model", checkpoint, "--out", tmp_path / "out",
                  "--threads", 1)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    table = pd.read_csv(tmp_path / "out" / "graphene_0.2_atoms.csv")
    assert {"x", "y", "x_A", "y_A"} <= set(table.columns)
    matched = match_atoms(table, frame.atoms, tol_px=1.5)
    assert matched.f1 > 0.95 and matched.rmse_px < 0.3
    # --pixel-size overrides the file: the same frame called 0.1 Å/px is a wrong scale
    wrong = _run("atoms", "find", path, "--model", checkpoint, "--out", tmp_path / "out2",
                 "--pixel-size", 0.1)
    assert wrong.exit_code == 0, wrong.output
    assert "warning: atom spacing" in wrong.output and "differs" in wrong.output


def test_wrong_material_warns_and_strict_exits_2(checkpoint, tmp_path):
    path = _save_frame(tmp_path, "srtio3", _frame("srtio3", 0.1, size=128), pixel_size=0.1)
    result = _run("atoms", "find", path, "--model", checkpoint, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "differs from the model's lattice" in warnings[0], result.output
    strict = _run("atoms", "find", path, "--model", checkpoint, "--out", tmp_path / "out",
                  "--strict")
    assert strict.exit_code == 2, strict.output
    text = strict.output.strip()
    assert text.startswith("error: ") and "\n" not in text and "--strict" in text


def test_frame_without_pixel_size_falls_back_to_the_model_scale(checkpoint, tmp_path):
    frame = _frame("graphene", 0.1)
    path = _save_frame(tmp_path, "no_scale", frame)
    result = _run("atoms", "find", path, "--model", checkpoint, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "records no pixel size" in result.output and "0.1 Å/px" in result.output
    table = pd.read_csv(tmp_path / "out" / "no_scale_atoms.csv")
    assert match_atoms(table, frame.atoms, tol_px=1.5).f1 > 0.95


def test_bad_pixel_size_and_threads_exit_2(checkpoint, tmp_path):
    path = _save_frame(tmp_path, "f", _frame("graphene", 0.1))
    for option in (("--pixel-size", 0), ("--pixel-size", -0.1), ("--threads", 0)):
        result = _run("atoms", "find", path, "--model", checkpoint, "--out", tmp_path / "o",
                      *option)
        assert result.exit_code == 2, (option, result.output)
        assert result.output.strip().startswith("error: ")


@pytest.fixture(scope="module")
def ensemble_checkpoint(model_at_0_1, tmp_path_factory):
    """Two copies of the 0.1 Å/px model as an ensemble checkpoint (enough to test the scale)."""
    path = tmp_path_factory.mktemp("ensemble") / "graphene_0.1_x2.safetensors"
    return save_checkpoint(path, [model_at_0_1.model, model_at_0_1.model], model_at_0_1.card)


def test_ensemble_find_maps_positions_back_to_original_pixels(ensemble_checkpoint, tmp_path):
    frame = _frame("graphene", 0.2)
    path = _save_frame(tmp_path, "g", frame, pixel_size=0.2)
    result = _run("atoms", "ensemble-find", path, "--model", ensemble_checkpoint,
                  "--out", tmp_path / "out", "--threads", 1)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    table = pd.read_csv(tmp_path / "out" / "g_atoms.csv")
    assert {"x_A", "y_A", "uncertainty"} <= set(table.columns)
    matched = match_atoms(table, frame.atoms, tol_px=1.5)
    assert matched.f1 > 0.95 and matched.rmse_px < 0.3


def test_iterate_trains_on_frames_resampled_to_the_model_scale(ensemble_checkpoint, tmp_path,
                                                               monkeypatch):
    import activescope.microscopy.ensemble.elit as elit

    folder = tmp_path / "frames"
    folder.mkdir()
    _save_frame(folder, "a", _frame("graphene", 0.2, seed=1, size=64), pixel_size=0.2)
    _save_frame(folder, "b", _frame("graphene", 0.2, seed=2, size=64), pixel_size=0.2)
    seen = []
    original = elit.iterate
    monkeypatch.setattr(elit, "iterate", lambda members, classes, images, *args, **kwargs:
                        seen.append(images.shape) or original(members, classes, images, *args,
                                                              **kwargs))
    out = tmp_path / "tuned.safetensors"
    result = _run("atoms", "iterate", folder, "--model", ensemble_checkpoint, "--out", out,
                  "--rounds", 1, "--steps", 1, "--batch-size", 2, "--crop", 32)
    assert result.exit_code == 0, result.output
    assert seen == [(2, 128, 128)] and out.is_file()
