"""The `activescope atoms ...` commands through the main entry point."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from activescope.cli import app
from activescope.microscopy.nets.checkpoint import ModelCard, save_checkpoint
from activescope.microscopy.nets.unet import build_network

runner = CliRunner()
TINY = {"base_filters": 4, "depth": 2}


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    result = _run("atoms", "simulate", out, "--n", 2, "--size", 64, "--seed", 4, "--dose", 5000)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "graphene.safetensors"
    result = _run("atoms", "train", path, "--steps", 3, "--batch-size", 2, "--crop", 32,
                  "--val-frames", 0)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def ensemble_path(tmp_path_factory):
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(build_network("lite_unet", n_classes=3, **TINY).eval())
    path = tmp_path_factory.mktemp("ens") / "ensemble.safetensors"
    return save_checkpoint(path, members, ModelCard("lite_unet", TINY,
                                                    ["background", "C", "dopant"]))


def test_simulate_writes_frames_labels_and_atom_tables(frames):
    image, labels = np.load(frames / "frame_001.npy"), np.load(frames / "labels_001.npy")
    atoms = pd.read_csv(frames / "atoms_001.csv")
    assert image.shape == labels.shape == (64, 64)
    assert {"x", "y", "cls"} <= set(atoms.columns) and len(atoms) > 5
    rows, cols = np.rint(atoms["y"]).astype(int), np.rint(atoms["x"]).astype(int)
    assert (labels[rows, cols] == atoms["cls"].to_numpy()).all()


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_find_writes_csv_and_overlay_and_prints_counts(frames, model, tmp_path, suffix):
    image = np.load(frames / "frame_000.npy")
    path = tmp_path / f"scan{suffix}"
    np.save(path, image) if suffix == ".npy" else tifffile.imwrite(path, image)
    result = _run("atoms", "find", path, "--model", model, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "C: " in result.output and "dopant: " in result.output
    table = pd.read_csv(tmp_path / "out" / "scan_atoms.csv")
    assert {"x", "y", "cls", "cls_name", "score"} <= set(table.columns)
    assert (tmp_path / "out" / "scan_overlay.png").stat().st_size > 1000


@pytest.mark.parametrize("options", [(), ("--backend", "fused", "--member-lookup")])
def test_ensemble_find_adds_uncertainty_and_variance_map(frames, ensemble_path, tmp_path, options):
    result = _run("atoms", "ensemble-find", frames / "frame_000.npy", "--model", ensemble_path,
                  "--out", tmp_path, "--threshold", 0.05, "--min-frequency", 0.0, *options)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "frame_000_atoms.csv")
    assert {"uncertainty", "detection_freq", "pos_spread_px", "class_disagreement"} <= set(table)
    assert (tmp_path / "frame_000_variance.png").is_file()
    assert (tmp_path / "frame_000_overlay.png").is_file()


def test_ensemble_find_rejects_an_unknown_backend(frames, ensemble_path, tmp_path):
    result = _run("atoms", "ensemble-find", frames / "frame_000.npy", "--model", ensemble_path,
                  "--out", tmp_path, "--backend", "gpu-magic")
    assert result.exit_code == 2
    assert "backend" in result.output and "Traceback" not in result.output


def test_iterate_fine_tunes_an_ensemble_on_a_folder(ensemble_path, tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        np.save(folder / f"f{k}.npy", rng.random((48, 48)).astype(np.float32))
    out = tmp_path / "tuned.safetensors"
    result = _run("atoms", "iterate", folder, "--model", ensemble_path, "--out", out,
                  "--rounds", 1, "--steps", 2, "--batch-size", 2, "--crop", 32)
    assert result.exit_code == 0, result.output
    assert "round 0:" in result.output and out.is_file()


def _bad_inputs(tmp_path):
    nan = np.random.default_rng(0).random((32, 32))
    nan[3, 4] = np.nan
    cases = {"nan.npy": nan, "flat.npy": np.ones((32, 32)), "cube.npy": np.ones((2, 3, 32, 32))}
    for name, array in cases.items():
        np.save(tmp_path / name, array)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 certainly not a tiff")
    return ["nan.npy", "flat.npy", "cube.npy", "broken.tif", "missing.npy"]


def test_bad_inputs_exit_2_with_one_line(model, tmp_path):
    for name in _bad_inputs(tmp_path):
        result = _run("atoms", "find", tmp_path / name, "--model", model, "--out", tmp_path)
        assert result.exit_code == 2, (name, result.output)
        assert result.output.strip().count("\n") == 0 and "error" in result.output.lower()
    np.save(tmp_path / "ok.npy", np.random.default_rng(1).random((32, 32)))
    mismatch = _run("atoms", "find", tmp_path / "ok.npy", "--model", model, "--lattice", "mos2")
    assert mismatch.exit_code == 2 and "classes" in mismatch.output
    not_a_model = _run("atoms", "find", tmp_path / "ok.npy", "--model", tmp_path / "nan.npy")
    assert not_a_model.exit_code == 2 and "checkpoint" in not_a_model.output


def _one_line_error(result, *words):
    """Exit code 2 and exactly one line `error: ...` containing ``words``, no traceback."""
    text = result.output.strip()
    assert result.exit_code == 2, result.output
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    for word in words:
        assert str(word) in text, (word, text)


@pytest.mark.parametrize("n", [0, -1])
def test_simulate_needs_at_least_one_frame(tmp_path, n):
    result = _run("atoms", "simulate", tmp_path / "frames", "--n", n, "--size", 32)
    _one_line_error(result, "number of frames must be at least 1", f"got {n}")
    assert not (tmp_path / "frames").exists()


@pytest.mark.parametrize("command", ["find", "ensemble-find"])
def test_find_rejects_a_negative_min_distance(frames, ensemble_path, tmp_path, command):
    result = _run("atoms", command, frames / "frame_000.npy", "--model", ensemble_path,
                  "--out", tmp_path / "out", "--min-distance", -1)
    _one_line_error(result, "--min-distance must be at least 0 Å", "got -1.0 Å")
    assert not (tmp_path / "out").exists()


def _fail(*_, **__):
    raise AssertionError("the work started before the destination was checked")


@pytest.fixture
def no_work(monkeypatch):
    """Make simulating, training and atom finding fail loudly (exit code 1, not 2)."""
    monkeypatch.setattr("activescope.microscopy.sim.simulate.simulate_frame", _fail)
    monkeypatch.setattr("activescope.microscopy.training.trainer.train_on_simulation", _fail)
    monkeypatch.setattr("activescope.microscopy.find.predict.Predictor.find", _fail)


def _destination(tmp_path, case):
    """A bad destination and the words its error must contain; runs as root too."""
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "old.csv").write_text("x,y")
    return {
        "existing file": (notes, "is an existing file, not a folder"),
        "existing folder": (folder, "is an existing folder, not a file"),
        "under a file": (notes / "out", "notes.txt is a file, not a folder"),
        "under /proc": (Path("/proc") / "activescope-out", "cannot write"),
    }[case]


def _args(command, out, frames, model):
    return {"simulate": ("atoms", "simulate", out, "--n", 1, "--size", 32),
            "train": ("atoms", "train", out, "--steps", 1, "--batch-size", 1, "--crop", 32,
                      "--val-frames", 0),
            "find": ("atoms", "find", frames / "frame_000.npy", "--model", model,
                     "--out", out)}[command]


@pytest.mark.parametrize("command, case", [
    ("simulate", "existing file"), ("simulate", "under a file"), ("simulate", "under /proc"),
    ("find", "existing file"), ("find", "under a file"), ("find", "under /proc"),
    ("train", "existing folder"), ("train", "under a file"), ("train", "under /proc"),
])
def test_unwritable_destinations_fail_first_in_one_line(frames, model, tmp_path, no_work,
                                                        command, case):
    out, words = _destination(tmp_path, case)
    result = _run(*_args(command, out, frames, model))
    _one_line_error(result, out, words)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["old.csv"]
