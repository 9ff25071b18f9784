"""Invariant VAE: network shapes, the spatial-transformer decoder, patch extraction at the
border, rotation invariance after training on a toy set, checkpoints and the CLI."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import assert_user_error, invoke

from activescope.engine.errors import DataError
from activescope.microscopy.ivae.checks import (
    knn_accuracy,
    rotation_sensitivity,
    toy_patches,
)
from activescope.microscopy.ivae.models import IVAE, IVAEShape
from activescope.microscopy.ivae.patches import extract_patches, rotate_patches
from activescope.microscopy.ivae.train import (
    Embedder,
    IVAETrainConfig,
    load_ivae,
    save_ivae,
    train_ivae,
)
from activescope.microscopy.nets.checkpoint import ModelCard, save_checkpoint
from activescope.microscopy.nets.unet import build_network

SIDE = 12


@pytest.mark.parametrize("rotation,translation,n_classes", [(True, True, 0), (True, False, 3), (False, False, 0)])
def test_shapes_of_each_variant(rotation, translation, n_classes):
    model = IVAE(IVAEShape(side=SIDE, latent_dim=3, rotation=rotation, translation=translation, n_classes=n_classes,
                           hidden=16))
    patches = torch.rand(5, SIDE, SIDE)
    classes = torch.tensor([0, 1, 2, 0, 1]) if n_classes else None
    mean, logvar = model.encode(patches, classes)
    assert mean.shape == logvar.shape == (5, 3 + int(rotation) + 2 * int(translation))
    assert model.decode(mean, classes).shape == (5, SIDE, SIDE)
    assert model.loss(patches, classes, consistency=1.0).ndim == 0


def test_decoder_applies_the_angle_latent_as_a_rotation_of_its_grid():
    torch.manual_seed(0)
    model = IVAE(IVAEShape(side=SIDE, latent_dim=2, rotation=True, translation=False, hidden=16))
    latent = torch.tensor([[0.3, -0.2, 0.0], [0.3, -0.2, math.pi / 2]])
    with torch.no_grad():
        upright, turned = model.decode(latent)
    np.testing.assert_allclose(turned.numpy(), np.rot90(upright.numpy(), k=1), atol=1e-6)
    assert np.abs(turned.numpy() - upright.numpy()).max() > 1e-3


def test_patch_extraction_drops_or_reflects_atoms_at_the_border():
    image = np.zeros((40, 50), dtype=np.float32)
    image[20, 25] = image[2, 3] = 1.0
    x, y = np.array([25.0, 3.0, 47.0]), np.array([20.0, 2.0, 30.0])
    dropped = extract_patches(image, x, y, window_px=8, side=9, border="drop")
    assert dropped.patches.shape == (1, 9, 9) and dropped.n_dropped == 2 and dropped.kept.tolist() == [True, False, False]
    assert dropped.patches[0, 4, 4] == pytest.approx(1.0) and dropped.patches[0].sum() == pytest.approx(1.0)
    reflected = extract_patches(image, x, y, window_px=8, side=9, border="reflect")
    assert reflected.patches.shape == (3, 9, 9) and reflected.n_dropped == 0
    assert reflected.patches[1, 4, 4] == pytest.approx(1.0)
    with pytest.raises(DataError, match="2-D frame"):
        extract_patches(np.zeros((3, 8, 8)), x, y, 4)
    with pytest.raises(DataError, match="different lengths"):
        extract_patches(image, x, y[:2], 4)


def test_rotate_patches_turns_a_patch_about_its_centre():
    patch = np.zeros((1, 9, 9), dtype=np.float32)
    patch[0, 4, 7] = 1.0
    turned = rotate_patches(patch, np.array([np.pi / 2]))
    assert np.unravel_index(turned[0].argmax(), (9, 9)) in {(1, 4), (7, 4)}


@pytest.fixture(scope="module")
def toy_models():
    patches, kind, _ = toy_patches(600, side=SIDE, kinds=3, seed=0)
    config = IVAETrainConfig(epochs=20, batch_size=32, lr=2e-3, seed=1)
    invariant = train_ivae(patches, IVAEShape(side=SIDE, rotation=True, translation=False, hidden=32), config,
                           card={"window_A": 3.0})
    plain = train_ivae(patches, IVAEShape(side=SIDE, rotation=False, translation=False, hidden=32), config)
    return invariant, plain


def test_rotated_patches_keep_their_latent_in_the_rvae_not_in_a_plain_vae(toy_models):
    invariant, plain = toy_models
    test, kind, _ = toy_patches(200, side=SIDE, kinds=3, seed=5)
    rvae, vae = Embedder(invariant.model), Embedder(plain.model)
    sensitivity_rvae = rotation_sensitivity(lambda p: rvae.latent(p)[:, :2], test, seed=2)
    sensitivity_vae = rotation_sensitivity(lambda p: vae.latent(p)[:, :2], test, seed=2)
    assert sensitivity_rvae < 0.15 and sensitivity_rvae < 0.5 * sensitivity_vae, (sensitivity_rvae, sensitivity_vae)
    assert knn_accuracy(rvae.latent(test)[:, :2], kind) > 0.9
    reconstruction = ((rvae.reconstruct(test) - test) ** 2).mean()
    assert reconstruction < 2.0 * ((vae.reconstruct(test) - test) ** 2).mean()


def test_checkpoint_round_trip_and_wrong_kind(toy_models, tmp_path):
    invariant, _ = toy_models
    path = save_ivae(tmp_path / "rvae.safetensors", invariant)
    model, card = load_ivae(path)
    patches, _, _ = toy_patches(4, side=SIDE, seed=9)
    np.testing.assert_allclose(Embedder(model).latent(patches), Embedder(invariant.model).latent(patches), atol=1e-5)
    assert card["kind"] == "ivae" and card["window_A"] == 3.0
    table = Embedder(model).embed(patches)
    assert list(table.columns) == ["z0", "z1", "z_std", "angle_deg"]
    finder = save_checkpoint(tmp_path / "finder.safetensors", build_network("lite_unet", n_classes=3, base_filters=4),
                             ModelCard("lite_unet", {"base_filters": 4}, ["background", "C", "dopant"]))
    with pytest.raises(DataError, match="is an atom finder .* checkpoint, not an invariant VAE"):
        load_ivae(finder)
    with pytest.raises(DataError, match="12 x 12 patches"):
        Embedder(model).embed(np.zeros((2, 8, 8)))


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    result = invoke("atoms", "embed-train", root / "rvae.safetensors", "--lattice", "graphene", "--frames", 2,
                    "--size", 96, "--epochs", 2, "--side", SIDE, "--hidden", 16)
    assert result.exit_code == 0, result.output
    assert invoke("atoms", "simulate", root, "--lattice", "graphene", "--n", 1, "--size", 96, "--seed", 3).exit_code == 0
    return root


def test_embed_cli_writes_latent_table_and_figure(cli_files, tmp_path):
    root = cli_files
    result = invoke("atoms", "embed", root / "frame_000.npy", "--model", root / "rvae.safetensors",
                    "--atoms", root / "atoms_000.csv", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "frame_000_latent.csv")
    atoms = pd.read_csv(root / "atoms_000.csv")
    assert {"x", "y", "cls", "z0", "z1", "angle_deg"} <= set(table.columns)
    dropped = int(result.output.split("(")[1].split()[0])
    assert len(table) + dropped == len(atoms) and dropped > 0
    assert (tmp_path / "frame_000_latent.png").stat().st_size > 10_000
    reflect = invoke("atoms", "embed", root / "frame_000.npy", "--model", root / "rvae.safetensors",
                     "--atoms", root / "atoms_000.csv", "--out", tmp_path / "r", "--border", "reflect")
    assert reflect.exit_code == 0 and "(0 dropped at the border)" in reflect.output
    assert len(pd.read_csv(tmp_path / "r" / "frame_000_latent.csv")) == len(atoms)


def test_embed_cli_bad_inputs_exit_2_with_one_line(cli_files, tmp_path):
    root = cli_files
    finder = save_checkpoint(tmp_path / "finder.safetensors", build_network("lite_unet", n_classes=3, base_filters=4),
                             ModelCard("lite_unet", {"base_filters": 4}, ["background", "C", "dopant"]))
    frame, atoms = root / "frame_000.npy", root / "atoms_000.csv"
    assert_user_error(invoke("atoms", "embed", frame, "--model", finder, "--atoms", atoms, "--out", tmp_path),
                      "atom finder", "not an invariant VAE")
    assert_user_error(invoke("atoms", "embed", frame, "--model", root / "rvae.safetensors", "--atoms", atoms,
                             "--finder", finder, "--out", tmp_path), "exactly one of --atoms")
    bare = tmp_path / "bare.npy"
    np.save(bare, np.load(frame))
    assert_user_error(invoke("atoms", "embed", bare, "--model", root / "rvae.safetensors", "--atoms", atoms,
                             "--out", tmp_path), "no pixel size")
    assert_user_error(invoke("atoms", "embed-train", tmp_path / "x.safetensors", "--lattice", "nope"), "unknown lattice")
    assert_user_error(invoke("atoms", "find", frame, "--model", root / "rvae.safetensors", "--out", tmp_path),
                      "is an invariant VAE", "not an atom finder")
