"""`activescope atoms ...`: simulate frames, train and apply atom finders and ensembles.

Commands only parse options and call the library; bad input raises ``DataError`` which the
main entry point prints as one line with exit code 2. Every output destination is checked
(``io.check_destination``) before the work that fills it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import typer

from activescope.engine.errors import DataError
from activescope.microscopy.find.locate import save_atoms
from activescope.microscopy.io import check_destination, read_image
from activescope.microscopy.nets.checkpoint import load_checkpoint, save_checkpoint
from activescope.microscopy.sim.simulate import (SimConfig, frame_seeds, lattice_classes,
                                                 simulate_frame)
from activescope.microscopy.training.trainer import TrainConfig, train_on_simulation

atoms_app = typer.Typer(help="Atom finding: simulate, train, find, ensembles, iterative training.",
                        no_args_is_help=True)

_LATTICE = typer.Option("graphene", help="graphene, mos2, ws2 or srtio3")
_EXPECT = typer.Option(None, help="check that the model was trained for this lattice's classes")
_MIN_DISTANCE = typer.Option(4.0, help="pixels, >= 0: of two atoms closer than this the weaker "
                             "is dropped (0 keeps both)")
_IMAGE_SUFFIXES = {".npy", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".dm3", ".dm4",
                   ".emd", ".hspy", ".h5", ".hdf5"}


def _sim_config(lattice: str, size: int, dose: Optional[float],
                probe_fwhm: Optional[float]) -> SimConfig:
    config = SimConfig(lattice=lattice, size=size)
    if dose is not None:
        config.dose = dose
    if probe_fwhm is not None:
        config.probe_fwhm = probe_fwhm
    return config


def _expected_classes(lattice: Optional[str]) -> Optional[list[str]]:
    return lattice_classes(lattice) if lattice is not None else None


def _train_config(steps: int, batch_size: int, crop: int, lr: float, seed: int,
                  dice: float) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch_size, crop_size=crop, learning_rate=lr,
                       seed=seed, dice_weight=dice)


@atoms_app.command()
def simulate(out: Path = typer.Argument(..., help="output folder"), lattice: str = _LATTICE,
             n: int = typer.Option(8, help="number of frames, at least 1"),
             size: int = typer.Option(256, help="frame size, pixels"),
             seed: int = typer.Option(0), dose: Optional[float] = typer.Option(
                 None, help="electrons per Å² (default: random 2e3-2e4 per frame)"),
             probe_fwhm: Optional[float] = typer.Option(None, help="probe FWHM, Å")) -> None:
    """Write simulated frames (frame_XXX.npy), label masks (labels_XXX.npy), atoms (atoms_XXX.csv)."""
    config = _sim_config(lattice, size, dose, probe_fwhm)
    seeds = frame_seeds(seed, n)
    check_destination(out, folder=True)
    for index, frame_seed in enumerate(seeds):
        frame = simulate_frame(config, int(frame_seed))
        np.save(out / f"frame_{index:03d}.npy", frame.image)
        np.save(out / f"labels_{index:03d}.npy", frame.labels)
        save_atoms(frame.atoms, out / f"atoms_{index:03d}.csv")
    typer.echo(f"wrote {n} {lattice} frames of {size}x{size} px to {out}")


@atoms_app.command()
def train(out: Path = typer.Argument(..., help="checkpoint to write (.safetensors)"),
          lattice: str = _LATTICE, arch: str = typer.Option("lite_unet", help="unet or lite_unet"),
          steps: int = typer.Option(500), batch_size: int = typer.Option(16),
          crop: int = typer.Option(128, help="training crop size, pixels"),
          lr: float = typer.Option(3e-3), seed: int = typer.Option(0),
          dice: float = typer.Option(0.0, help="weight of the Dice loss term"),
          val_frames: int = typer.Option(8, help="validation frames (256 px)")) -> None:
    """Train one atom finder on simulated frames and save it as a checkpoint."""
    config = _train_config(steps, batch_size, crop, lr, seed, dice)
    check_destination(out, folder=False)
    trained = train_on_simulation(SimConfig(lattice=lattice), config, arch, val_frames=val_frames)
    save_checkpoint(out, trained.model, trained.card)
    f1 = trained.history.val_f1[-1] if trained.history.val_f1 else float("nan")
    typer.echo(f"saved {out}  validation F1 {f1:.4f}  ({trained.history.seconds:.0f} s)")


def _write_outputs(image: np.ndarray, atoms: pd.DataFrame, classes: list[str], out: Path,
                   stem: str, uncertainty: Optional[str] = None) -> Path:
    from activescope.microscopy.find.overlay import save_overlay

    table = atoms.drop(columns=[c for c in ("frame",) if c in atoms.columns])
    table = table.assign(cls_name=[classes[int(c)] for c in table["cls"]])
    csv = save_atoms(table, out / f"{stem}_atoms.csv")
    save_overlay(image, table, out / f"{stem}_overlay.png", classes=classes,
                 uncertainty=uncertainty, title=f"{stem}: {len(table)} atoms")
    counts = table["cls_name"].value_counts()
    for name in classes[1:]:
        typer.echo(f"{name}: {int(counts.get(name, 0))}")
    return csv


@atoms_app.command()
def find(image: Path = typer.Argument(..., help="npy/tif/png/dm3/dm4/emd/hspy image"),
         model: Path = typer.Option(..., "--model", help="checkpoint (.safetensors)"),
         out: Path = typer.Option(Path("atoms-out"), "--out", help="output folder"),
         threshold: float = typer.Option(0.5), min_distance: float = _MIN_DISTANCE,
         lattice: Optional[str] = _EXPECT) -> None:
    """Find atoms in one image: writes <name>_atoms.csv and <name>_overlay.png."""
    from activescope.microscopy.find.predict import Predictor

    frame, _ = read_image(image)
    predictor = Predictor.from_checkpoint(model, _expected_classes(lattice), threshold=threshold,
                                          min_distance_px=min_distance)
    check_destination(out, folder=True)
    atoms = predictor.find(frame)
    csv = _write_outputs(frame, atoms, predictor.classes, out, image.stem)
    typer.echo(f"wrote {csv}")


@atoms_app.command("ensemble-train")
def ensemble_train(out: Path = typer.Argument(..., help="ensemble checkpoint to write"),
                   lattice: str = _LATTICE, members: int = typer.Option(5),
                   mode: str = typer.Option("scratch", help="scratch or finetune"),
                   arch: str = typer.Option("lite_unet"), steps: int = typer.Option(500),
                   finetune_steps: int = typer.Option(100), batch_size: int = typer.Option(16),
                   crop: int = typer.Option(128), lr: float = typer.Option(3e-3),
                   seed: int = typer.Option(0)) -> None:
    """Train an ensemble (different seeds and batch orders) and save it as one checkpoint."""
    from activescope.microscopy.ensemble.train import train_ensemble

    config = _train_config(steps, batch_size, crop, lr, seed, 0.0)
    check_destination(out, folder=False)
    trained = train_ensemble(SimConfig(lattice=lattice), config, members, arch, mode=mode,
                             finetune_steps=finetune_steps)
    save_checkpoint(out, trained.members, trained.card)
    typer.echo(f"saved {members}-member ensemble to {out}")


@atoms_app.command("ensemble-find")
def ensemble_find(image: Path = typer.Argument(..., help="npy/tif/png/dm3/dm4/emd/hspy image"),
                  model: Path = typer.Option(..., "--model", help="ensemble checkpoint"),
                  out: Path = typer.Option(Path("atoms-out"), "--out", help="output folder"),
                  threshold: float = typer.Option(0.5), min_distance: float = _MIN_DISTANCE,
                  min_frequency: float = typer.Option(0.5, help="share of members that must agree"),
                  lattice: Optional[str] = _EXPECT,
                  backend: str = typer.Option("auto", help="auto | fused | vmap | loop: how the "
                                              "members run (auto: loop on one CPU thread, "
                                              "else one fused grouped-convolution network)"),
                  member_lookup: bool = typer.Option(False, "--member-lookup", help="find atoms "
                                                     "on the mean map and look members up around "
                                                     "them (faster, approximate spread)")) -> None:
    """Ensemble atom finding: CSV with per-atom uncertainty, overlay and variance-map PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from activescope.microscopy.ensemble.finder import Ensemble

    frame, _ = read_image(image)
    ensemble = Ensemble.from_checkpoint(model, _expected_classes(lattice), threshold=threshold,
                                        min_distance_px=min_distance, min_frequency=min_frequency,
                                        backend=backend, member_lookup=member_lookup)
    check_destination(out, folder=True)
    atoms, maps = ensemble.find_with_maps(frame)
    csv = _write_outputs(frame, atoms, ensemble.classes, out, image.stem, "uncertainty")
    plt.imsave(out / f"{image.stem}_variance.png", maps.atom_variance[0], cmap="magma")
    typer.echo(f"wrote {csv} and {out / (image.stem + '_variance.png')}")


def _read_folder(folder: Path) -> np.ndarray:
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in {folder}")
    frames = [read_image(path)[0] for path in paths]
    if len({frame.shape for frame in frames}) > 1:
        raise DataError(f"images in {folder} differ in shape; ELIT needs one frame size")
    return np.stack(frames)


@atoms_app.command()
def iterate(folder: Path = typer.Argument(..., help="folder of unlabelled images"),
            model: Path = typer.Option(..., "--model", help="ensemble checkpoint"),
            out: Path = typer.Option(..., "--out", help="fine-tuned ensemble checkpoint"),
            rounds: int = typer.Option(2), steps: int = typer.Option(100, help="steps per round"),
            batch_size: int = typer.Option(8), crop: int = typer.Option(128),
            lr: float = typer.Option(3e-4), seed: int = typer.Option(0)) -> None:
    """Ensemble iterative training (ELIT): self-train the ensemble on unlabelled frames."""
    from activescope.microscopy.ensemble.elit import iterate as run_elit

    frames = _read_folder(folder)
    members, card = load_checkpoint(model)
    if len(members) < 2:
        raise DataError(f"{model} holds one model; ELIT needs an ensemble checkpoint")
    multiple = members[0].size_multiple
    crop = min(crop, *frames.shape[1:]) // multiple * multiple
    if crop < multiple:
        raise DataError(f"frames {frames.shape[1:]} are too small to train on (< {multiple} px)")
    config = TrainConfig(steps=steps, batch_size=batch_size, crop_size=crop, learning_rate=lr,
                         seed=seed)
    check_destination(out, folder=False)
    result = run_elit(members, card.classes, frames, rounds, config)
    card.training["elit"] = {"rounds": rounds, "steps": steps, "frames": len(frames)}
    save_checkpoint(out, result.members, card)
    for entry in result.rounds:
        typer.echo(f"round {entry.round}: {entry.n_confident}/{entry.n_atoms} atoms confident, "
                   f"{entry.ignored_fraction:.1%} pixels ignored")
    typer.echo(f"saved {out}")


def bench_atoms(out: Path = typer.Option(Path("bench-atoms"), "--out", "-o",
                                         help="output folder"),
                quick: bool = typer.Option(False, "--quick", help="CI-sized run"),
                threads: int = typer.Option(1, help="torch threads for training/accuracy")) -> None:
    """Atom-finding benchmarks: F1 per lattice and vs dose, OOD + ensembles + ELIT, speed."""
    from activescope.microscopy.bench import run_benchmarks

    typer.echo(run_benchmarks(check_destination(out, folder=True), quick=quick, threads=threads))
