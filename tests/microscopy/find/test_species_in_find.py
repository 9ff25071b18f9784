"""Species by sublattice inside the finders: `Predictor`, `Ensemble`, ELIT pseudo-labels and
`atoms find --species`, on a multislice-like frame whose S2/Mo ratio the network never saw."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree
from typer.testing import CliRunner

from activescope.cli import app
from activescope.engine.errors import DataError
from activescope.microscopy.ensemble.elit import PseudoLabelRule, pseudo_labels
from activescope.microscopy.ensemble.finder import Ensemble
from activescope.microscopy.find.metrics import match_atoms
from activescope.microscopy.find.predict import Predictor
from activescope.microscopy.find.species import (
    assign_species,
    missing_sites,
    sample_intensity,
)
from activescope.microscopy.nets.checkpoint import read_card, save_checkpoint
from activescope.microscopy.sim.simulate import SimConfig, simulate_frame
from activescope.microscopy.training.trainer import TrainConfig, train_on_simulation

CLASSES = ["background", "metal", "chalcogen", "dopant"]
# default contrast (S2/Mo ≈ 0.39), no defects: what the tiny network learns from
MOS2 = dict(lattice="mos2", pixel_size=0.12, probe_fwhm=0.9, dose=5e3, read_noise=0.0,
            jitter=0.0, drift=0.0, background=0.0, vacancy_prob=0.0, dopant_prob=0.0)
NEW_CONTRAST = 1.3  # Σ Z^1.3: S2/Mo ≈ 0.57, beyond the multislice 0.50 (default exponent 1.7)
runner = CliRunner()


@pytest.fixture(scope="module")
def trained():
    """A tiny MoS2 finder trained on default-contrast frames only (a few seconds)."""
    config = TrainConfig(steps=120, batch_size=8, crop_size=64, augment=False, seed=0)
    return train_on_simulation(SimConfig(size=64, **MOS2), config, "lite_unet",
                               {"base_filters": 8, "depth": 2}, val_frames=0, device="cpu")


@pytest.fixture(scope="module")
def new_contrast_frame():
    return simulate_frame(SimConfig(size=128, contrast_exponent=NEW_CONTRAST, **MOS2), 7)


def _class_accuracy(found: pd.DataFrame, truth: pd.DataFrame, column: str = "cls") -> float:
    result = match_atoms(found.assign(cls=found[column]), truth, tol_px=3.0, n_classes=4)
    assert result.recall > 0.95
    return result.class_accuracy


def test_lattice_species_fix_what_the_network_gets_wrong(trained, new_contrast_frame):
    frame = new_contrast_frame
    by_network = Predictor(trained.model, CLASSES, "cpu", species="network").find(frame.image)
    by_lattice = Predictor(trained.model, CLASSES, "cpu", lattice="mos2",
                           pixel_size=0.12).find(frame.image)
    assert "sublattice" not in by_network.columns
    assert _class_accuracy(by_network, frame.atoms) < 0.9  # brightness alone fails here
    assert _class_accuracy(by_lattice, frame.atoms) == 1.0
    # the network's own classes are kept beside the decision
    assert _class_accuracy(by_lattice, frame.atoms, "cls_network") < 0.9
    sublattice = by_lattice["sublattice"].to_numpy()
    assert set(sublattice) <= {-1, 0, 1} and (sublattice >= 0).mean() > 0.9


def test_ensemble_consensus_and_elit_pseudo_labels_use_the_sublattice(trained,
                                                                      new_contrast_frame):
    frame = new_contrast_frame
    ensemble = Ensemble([trained.model, trained.model], CLASSES, "cpu", lattice="mos2",
                        pixel_size=0.12)
    assert _class_accuracy(ensemble.find(frame.image), frame.atoms) == 1.0
    labels, atoms = pseudo_labels(ensemble, frame.image[None], PseudoLabelRule())
    sure = atoms[atoms["confident"]]
    assert len(sure) > 0.8 * len(frame.atoms)
    painted = labels[0, np.rint(sure["y"]).astype(int), np.rint(sure["x"]).astype(int)]
    assert _class_accuracy(sure.assign(cls=painted), frame.atoms) == 1.0
    with pytest.raises(DataError, match="species"):
        PseudoLabelRule(species="brightness")


def test_find_species_option_and_a_frame_without_lattice(trained, new_contrast_frame, tmp_path):
    model = save_checkpoint(tmp_path / "mos2.safetensors", trained.model, trained.card)
    image = tmp_path / "frame.npy"
    np.save(image, new_contrast_frame.image)
    image.with_suffix(".json").write_text(json.dumps({"pixel_size_angstrom": 0.12}))
    result = runner.invoke(app, ["atoms", "find", str(image), "--model", str(model), "--out",
                                 str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "frame_atoms.csv")
    assert _class_accuracy(table, new_contrast_frame.atoms) == 1.0
    assert {"cls_network", "sublattice"} <= set(table.columns)

    noise = tmp_path / "noise.npy"  # blobs at random places: no lattice to fit
    rng = np.random.default_rng(0)
    canvas = np.zeros((128, 128), np.float32)
    canvas[rng.integers(4, 124, 60), rng.integers(4, 124, 60)] = 1.0
    np.save(noise, ndimage.gaussian_filter(canvas, 2.0))
    result = runner.invoke(app, ["atoms", "find", str(noise), "--model", str(model), "--out",
                                 str(tmp_path / "out2"), "--pixel-size", "0.12"])
    assert result.exit_code == 0, result.output
    assert "no lattice found" in result.output

    for option, value, words in [("--species", "brightness", "species must be one of"),
                                 ("--views", "3", "views must be 1 or 4")]:
        result = runner.invoke(app, ["atoms", "find", str(image), "--model", str(model),
                                     "--out", str(tmp_path / "out3"), option, value])
        assert result.exit_code == 2 and words in result.output
        assert "Traceback" not in result.output


def test_four_views_give_a_single_model_uncertainty(trained, new_contrast_frame):
    frame = new_contrast_frame
    finder = Predictor(trained.model, CLASSES, "cpu", lattice="mos2", pixel_size=0.12,
                       views=4)
    atoms = finder.find(frame.image)
    assert _class_accuracy(atoms, frame.atoms) == 1.0
    assert {"detection_freq", "class_disagreement", "uncertainty"} <= set(atoms.columns)
    assert atoms["uncertainty"].between(0.0, 1.0).all()
    # a frame the network has not learnt (blurred, noisy) raises the mean uncertainty
    rng = np.random.default_rng(1)
    hard = ndimage.gaussian_filter(frame.image, 2.0) + rng.normal(0, 0.6, frame.image.shape)
    assert finder.find(hard.astype(np.float32))["uncertainty"].mean() > \
        atoms["uncertainty"].mean()


def test_missing_sites_are_the_dropped_columns_of_their_sublattice() -> None:
    frame = simulate_frame(SimConfig(size=128, **MOS2), 3)
    atoms = frame.atoms
    xy = atoms[["x", "y"]].to_numpy()
    inner = ((xy > 12) & (xy < 115)).all(axis=1)
    dropped = inner & (np.random.default_rng(0).random(len(xy)) < 0.2)
    kept = ~dropped
    result = assign_species(xy[kept], intensity=sample_intensity(frame.image, xy[kept]),
                            lattice="mos2")
    sites, owner = missing_sites(xy[kept], result.sublattice, result.vectors, (128, 128))
    distance, nearest = cKDTree(xy).query(sites)
    assert (distance < 0.5).all() and dropped[nearest].all()  # every site is a dropped column
    assert set(nearest) >= set(np.flatnonzero(dropped))  # and every dropped column is found
    # each site belongs to the sublattice of its column's species
    assert all(result.sublattice_class[o] == c for o, c in zip(owner, atoms["cls"].to_numpy()[nearest]))


def test_ensemble_from_a_checkpoint_and_elit_rule_options(trained, new_contrast_frame, tmp_path):
    model = save_checkpoint(tmp_path / "mos2.safetensors", trained.model, trained.card)
    ensemble = tmp_path / "ens.safetensors"
    result = runner.invoke(app, ["atoms", "ensemble-train", str(ensemble), "--lattice", "mos2",
                                 "--init", str(model), "--members", "2", "--finetune-steps", "2",
                                 "--batch-size", "2", "--crop", "32"])
    assert result.exit_code == 0, result.output
    card = read_card(ensemble)
    assert card.training["ensemble_mode"] == "finetune" and card.pixel_size == 0.12
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    np.save(folder / "f0.npy", new_contrast_frame.image)
    tuned = tmp_path / "tuned.safetensors"
    base = ["atoms", "iterate", str(folder), "--model", str(ensemble), "--rounds", "1",
            "--steps", "2", "--batch-size", "2", "--crop", "64", "--pixel-size", "0.12"]
    result = runner.invoke(app, base + ["--out", str(tuned), "--max-uncertainty", "0.5",
                                        "--label-radius", "0.3", "--sim-share", "0.5"])
    assert result.exit_code == 0, result.output
    elit = read_card(tuned).training["elit"]
    assert elit["rule"]["max_uncertainty"] == 0.5 and elit["sim_share"] == 0.5
    assert elit["rule"]["label_radius_px"] == pytest.approx(2.5)
    for option, value, words in [("--max-uncertainty", "1.5", "max_uncertainty"),
                                 ("--sim-share", "1", "--sim-share"),
                                 ("--species", "colour", "species")]:
        result = runner.invoke(app, base + ["--out", str(tmp_path / "x.safetensors"), option,
                                            value])
        assert result.exit_code == 2 and words in result.output
        assert "Traceback" not in result.output
