"""`activescope atoms ...`: simulate frames, train and apply atom finders and ensembles.

Commands only parse options and call the library; bad input raises ``DataError`` which the
main entry point prints as one line with exit code 2. Every output destination is checked
(``io.check_destination``) before the work that fills it starts.

This module must stay cheap to import: ``activescope atoms --help`` and every sub-command's
``--help`` load it, so torch, the networks, training and matplotlib are imported inside the
commands only (a test checks that torch stays out of ``sys.modules``).

Distances are in Å: ``--pixel-size`` (Å/px) is given or read from the image file; ``find`` and
``ensemble-find`` resample a frame to the model's training scale before the network sees it and
map the atoms back to the frame's own pixels (tables get ``x_A``/``y_A`` in Å too), and check
that the atoms' nearest-neighbour spacing matches the model's lattice within 10 %.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import typer

from activescope.engine.errors import DataError
from activescope.microscopy.io import check_destination, read_image
from activescope.microscopy.ivae.cli import embed, embed_train

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from activescope.microscopy.nets.checkpoint import ModelCard
    from activescope.microscopy.sim.simulate import SimConfig
    from activescope.microscopy.training.trainer import TrainConfig

atoms_app = typer.Typer(help="Atom finding: simulate, train, find, ensembles, iterative training; "
                        "invariant-VAE embeddings of atom patches.", no_args_is_help=True)
atoms_app.command("embed-train")(embed_train)
atoms_app.command("embed")(embed)

_LATTICE = typer.Option("graphene", help="graphene, mos2, ws2, srtio3 ([001]) or srtio3_110")
_EXPECT = typer.Option(None, help="check that the model was trained for this lattice's classes")
_MIN_DISTANCE = typer.Option(0.5, help="Å, >= 0: of two atoms closer than this the weaker is "
                             "dropped (0 keeps both); applied at the model's training scale")
_FIND_PIXEL_SIZE = typer.Option(None, "--pixel-size", help="Å per pixel of the image (default: "
                                "read from the file; else the model's training scale, with a "
                                "warning)")
_STRICT = typer.Option(False, "--strict", help="exit 2 instead of warning when the atoms' "
                       "spacing disagrees with the model's lattice by more than 10 %, or when "
                       "too few atoms are found to tell")
_THREADS = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)")
_SPECIES = typer.Option("lattice", "--species", help="lattice: one class per sublattice of the "
                        "fitted lattice, ranked by brightness against the model's material "
                        "(robust to contrast the network never saw); network: each atom's own "
                        "class from the network")
_TRAIN_PIXEL_SIZE = typer.Option(None, "--pixel-size", help="training scale, Å per pixel "
                                 "(frames drawn within ±10 % of it; default 0.10-0.14, mean 0.12)"
                                 "; recorded in the model card")
_IMAGE_SUFFIXES = {".npy", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".dm3", ".dm4",
                   ".emd", ".hspy", ".h5", ".hdf5"}
PIXEL_SIZE_SPREAD = 0.10
SPACING_TOLERANCE = 0.10


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def _set_threads(threads: Optional[int]) -> None:
    """``torch.set_num_threads`` for the compute-heavy commands (None leaves torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise DataError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _check_pixel_size(value: Optional[float], what: str = "--pixel-size") -> None:
    if value is not None and not value > 0:
        raise DataError(f"{what} must be a positive number of Å per pixel, got {value}")


def _check_min_distance(value: float) -> None:
    if not value >= 0:
        raise DataError(f"--min-distance must be at least 0 Å, got {value} Å")


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int, float], None]]:
    """A rich progress bar with ETA on stderr; yields the training callback that drives it."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None, loss="-")

        def update(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=f"{loss:.4f}")

        yield update


def _sim_config(lattice: str, size: int, dose: Optional[float],
                probe_fwhm: Optional[float], pixel_size: Optional[float] = None) -> SimConfig:
    from activescope.microscopy.sim.simulate import SimConfig

    config = SimConfig(lattice=lattice, size=size)
    if dose is not None:
        config.dose = dose
    if probe_fwhm is not None:
        config.probe_fwhm = probe_fwhm
    if pixel_size is not None:
        config.pixel_size = pixel_size
    return config


def _training_sim(lattice: str, pixel_size: Optional[float]) -> SimConfig:
    """Simulation settings for training: the lattice, and the scale within ±10 % of
    ``pixel_size`` when given (the card then records ``pixel_size`` as the training scale)."""
    from activescope.microscopy.sim.simulate import SimConfig

    _check_pixel_size(pixel_size)
    config = SimConfig(lattice=lattice)
    if pixel_size is not None:
        config.pixel_size = (pixel_size * (1 - PIXEL_SIZE_SPREAD),
                             pixel_size * (1 + PIXEL_SIZE_SPREAD))
    return config


def _expected_classes(lattice: Optional[str]) -> Optional[list[str]]:
    from activescope.microscopy.sim.lattices import lattice_classes

    return lattice_classes(lattice) if lattice is not None else None


def _train_config(steps: int, batch_size: int, crop: int, lr: float, seed: int,
                  dice: float) -> TrainConfig:
    from activescope.microscopy.training.trainer import TrainConfig

    return TrainConfig(steps=steps, batch_size=batch_size, crop_size=crop, learning_rate=lr,
                       seed=seed, dice_weight=dice)


@atoms_app.command()
def simulate(out: Path = typer.Argument(..., help="output folder"), lattice: str = _LATTICE,
             n: int = typer.Option(8, help="number of frames, at least 1"),
             size: int = typer.Option(256, help="frame size, pixels"),
             seed: int = typer.Option(0), dose: Optional[float] = typer.Option(
                 None, help="electrons per Å² (default: random 2e3-2e4 per frame)"),
             probe_fwhm: Optional[float] = typer.Option(None, help="probe FWHM, Å"),
             pixel_size: Optional[float] = typer.Option(
                 None, "--pixel-size", help="Å per pixel (default: random 0.10-0.14 per frame)"),
             ) -> None:
    """Write simulated frames, their label masks and atom tables (pixels and Å).

    frame_XXX.npy with frame_XXX.json (pixel size in Å, read back by `find`), labels_XXX.npy,
    atoms_XXX.csv."""
    import json

    import numpy as np

    from activescope.microscopy.find.locate import save_atoms, with_angstrom
    from activescope.microscopy.sim.simulate import frame_seeds, simulate_frame

    _check_pixel_size(pixel_size)
    config = _sim_config(lattice, size, dose, probe_fwhm, pixel_size)
    seeds = frame_seeds(seed, n)
    check_destination(out, folder=True)
    for index, frame_seed in enumerate(seeds):
        frame = simulate_frame(config, int(frame_seed))
        scale = float(frame.params["pixel_size"])
        np.save(out / f"frame_{index:03d}.npy", frame.image)
        (out / f"frame_{index:03d}.json").write_text(json.dumps(
            {"pixel_size_angstrom": scale, "lattice": lattice, "seed": int(frame_seed)}))
        np.save(out / f"labels_{index:03d}.npy", frame.labels)
        save_atoms(with_angstrom(frame.atoms, scale), out / f"atoms_{index:03d}.csv")
    typer.echo(f"wrote {n} {lattice} frames of {size}x{size} px to {out}")


@atoms_app.command()
def train(out: Path = typer.Argument(..., help="checkpoint to write (.safetensors)"),
          lattice: str = _LATTICE, arch: str = typer.Option("lite_unet", help="unet or lite_unet"),
          steps: int = typer.Option(500), batch_size: int = typer.Option(16),
          crop: int = typer.Option(128, help="training crop size, pixels"),
          lr: float = typer.Option(3e-3), seed: int = typer.Option(0),
          dice: float = typer.Option(0.0, help="weight of the Dice loss term"),
          val_frames: int = typer.Option(8, help="validation frames (256 px)"),
          pixel_size: Optional[float] = _TRAIN_PIXEL_SIZE,
          threads: Optional[int] = _THREADS) -> None:
    """Train one atom finder on simulated frames and save it as a checkpoint.

    The final validation prints position F1, class-aware F1 and per-class precision/recall/F1.
    """
    from activescope.microscopy.nets.checkpoint import save_checkpoint
    from activescope.microscopy.training.trainer import train_on_simulation

    _set_threads(threads)
    config = _train_config(steps, batch_size, crop, lr, seed, dice)
    sim = _training_sim(lattice, pixel_size)
    check_destination(out, folder=False)
    with _progress(f"training {lattice}") as callback:
        trained = train_on_simulation(sim, config, arch, val_frames=val_frames, callback=callback)
    save_checkpoint(out, trained.model, trained.card)
    result = trained.history.val_result
    if result is not None:
        typer.echo(f"validation on {val_frames} frames: " + result.report(trained.card.classes))
    typer.echo(f"saved {out}  (training scale {trained.card.pixel_size:.4g} Å/px, "
               f"{trained.history.seconds:.0f} s)")


def _write_outputs(image: np.ndarray, atoms: pd.DataFrame, classes: list[str], out: Path,
                   stem: str, uncertainty: Optional[str] = None) -> Path:
    from activescope.microscopy.find.locate import save_atoms
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


def _scales(meta: dict, pixel_size: Optional[float], card: ModelCard,
            source: Path) -> tuple[float, float]:
    """(frame's Å/px, model's Å/px): from the option, the file or the model, with warnings."""
    _check_pixel_size(pixel_size)
    model_scale = card.pixel_size
    frame_scale = pixel_size if pixel_size is not None else meta.get("pixel_size_angstrom")
    if model_scale is None:
        _warn(f"the model card records no training pixel size; {source.name} is used as it is")
        return (frame_scale or 1.0), (frame_scale or 1.0)
    if frame_scale is None:
        _warn(f"{source.name} records no pixel size and no --pixel-size was given: assuming "
              f"the model's training scale, {model_scale:.4g} Å/px")
        frame_scale = model_scale
    return float(frame_scale), float(model_scale)


def _find_inputs(image: Path, model: Path, pixel_size: Optional[float], min_distance: float,
                 threads: Optional[int]) -> tuple[np.ndarray, dict, ModelCard]:
    """What `find` and `ensemble-find` check and read first: the options, the frame with its
    metadata, and the model's card."""
    from activescope.microscopy.nets.checkpoint import read_card

    _set_threads(threads)
    _check_pixel_size(pixel_size)
    _check_min_distance(min_distance)
    frame, meta = read_image(image)
    return frame, meta, read_card(model)


def _check_species_fit(atoms: pd.DataFrame, species: str) -> None:
    """Warn when ``--species lattice`` found no lattice (the network's classes are kept)."""
    if species == "lattice" and len(atoms) and (atoms["sublattice"] < 0).all():
        _warn("no lattice found in the atoms: classes are the network's, not per sublattice")


def _check_spacing(atoms: pd.DataFrame, frame_scale: float, card: ModelCard,
                   strict: bool) -> None:
    """Warn (or with ``strict`` fail) when the atoms' spacing does not fit the model's lattice."""
    from activescope.microscopy.find.locate import check_lattice_spacing

    expected = card.lattice_spacing
    if expected is None:
        problem = "the model card records no lattice: the atom spacing is not checked"
    else:
        problem = check_lattice_spacing(atoms, frame_scale, expected, SPACING_TOLERANCE)
    if problem is None:
        return
    if strict:
        raise DataError(problem + " (--strict)")
    _warn(problem)


@atoms_app.command()
def find(image: Path = typer.Argument(..., help="npy/tif/png/dm3/dm4/emd/hspy image"),
         model: Path = typer.Option(..., "--model", help="checkpoint (.safetensors)"),
         out: Path = typer.Option(Path("atoms-out"), "--out", help="output folder"),
         threshold: float = typer.Option(0.5), min_distance: float = _MIN_DISTANCE,
         lattice: Optional[str] = _EXPECT, pixel_size: Optional[float] = _FIND_PIXEL_SIZE,
         strict: bool = _STRICT, species: str = _SPECIES,
         views: int = typer.Option(1, help="1, or 4: also run the model on the frame's 90° "
                                   "rotations and add per-atom uncertainty columns "
                                   "(detection_freq, class_disagreement, uncertainty) for a "
                                   "single model, at 4x the time"),
         threads: Optional[int] = _THREADS) -> None:
    """Find atoms in one image: writes <name>_atoms.csv (x, y in pixels, x_A, y_A in Å; cls,
    and with --species lattice also cls_network and sublattice) and <name>_overlay.png. The
    frame is resampled to the model's training scale first."""
    from activescope.microscopy.find.predict import Predictor

    frame, meta, card = _find_inputs(image, model, pixel_size, min_distance, threads)
    model_scale = card.pixel_size or 1.0
    predictor = Predictor.from_checkpoint(model, _expected_classes(lattice), threshold=threshold,
                                          min_distance_px=min_distance / model_scale,
                                          species=species, views=views)
    check_destination(out, folder=True)
    frame_scale, model_scale = _scales(meta, pixel_size, card, image)
    atoms = predictor.find_at_scale(frame, frame_scale, model_scale)
    _check_spacing(atoms, frame_scale, card, strict)
    _check_species_fit(atoms, species)
    csv = _write_outputs(frame, atoms, predictor.classes, out, image.stem,
                         "uncertainty" if views > 1 else None)
    typer.echo(f"wrote {csv}")


@atoms_app.command("ensemble-train")
def ensemble_train(out: Path = typer.Argument(..., help="ensemble checkpoint to write"),
                   lattice: str = _LATTICE, members: int = typer.Option(5),
                   mode: str = typer.Option("scratch", help="scratch or finetune"),
                   arch: str = typer.Option("lite_unet"), steps: int = typer.Option(500),
                   finetune_steps: int = typer.Option(100), batch_size: int = typer.Option(16),
                   crop: int = typer.Option(128), lr: float = typer.Option(3e-3),
                   seed: int = typer.Option(0), pixel_size: Optional[float] = _TRAIN_PIXEL_SIZE,
                   init: Optional[Path] = typer.Option(
                       None, "--init", help="single-model checkpoint to fine-tune every member "
                       "from (implies --mode finetune; its architecture and training scale are "
                       "kept)"),
                   threads: Optional[int] = _THREADS) -> None:
    """Train an ensemble (different seeds and batch orders) and save it as one checkpoint."""
    from activescope.microscopy.ensemble.train import train_ensemble
    from activescope.microscopy.nets.checkpoint import load_checkpoint, save_checkpoint
    from activescope.microscopy.training.trainer import TrainedModel, TrainHistory

    _set_threads(threads)
    config = _train_config(steps, batch_size, crop, lr, seed, 0.0)
    baseline = None
    if init is not None:
        models, base_card = load_checkpoint(init, _expected_classes(lattice))
        baseline = TrainedModel(models[0], base_card, TrainHistory())
        mode, arch = "finetune", base_card.architecture
        pixel_size = pixel_size if pixel_size is not None else base_card.pixel_size
    sim = _training_sim(lattice, pixel_size)
    check_destination(out, folder=False)
    with _progress(f"training {members} members") as callback:
        trained = train_ensemble(sim, config, members, arch, mode=mode,
                                 finetune_steps=finetune_steps, baseline=baseline,
                                 callback=callback)
    save_checkpoint(out, trained.members, trained.card)
    typer.echo(f"saved {members}-member ensemble to {out}  (training scale "
               f"{trained.card.pixel_size:.4g} Å/px)")


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
                                                     "them (faster, approximate spread)"),
                  pixel_size: Optional[float] = _FIND_PIXEL_SIZE, strict: bool = _STRICT,
                  species: str = _SPECIES, threads: Optional[int] = _THREADS) -> None:
    """Ensemble atom finding: CSV with per-atom uncertainty, overlay and variance-map PNGs.

    The frame is resampled to the model's training scale first; positions are reported in the
    frame's pixels and in Å."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from scipy import ndimage

    from activescope.microscopy.ensemble.finder import Ensemble

    frame, meta, card = _find_inputs(image, model, pixel_size, min_distance, threads)
    model_scale = card.pixel_size or 1.0
    ensemble = Ensemble.from_checkpoint(model, _expected_classes(lattice), threshold=threshold,
                                        min_distance_px=min_distance / model_scale,
                                        min_frequency=min_frequency, backend=backend,
                                        member_lookup=member_lookup, species=species)
    check_destination(out, folder=True)
    frame_scale, model_scale = _scales(meta, pixel_size, card, image)
    atoms, maps = ensemble.find_at_scale(frame, frame_scale, model_scale)
    _check_spacing(atoms, frame_scale, card, strict)
    _check_species_fit(atoms, species)
    csv = _write_outputs(frame, atoms, ensemble.classes, out, image.stem, "uncertainty")
    variance = maps.atom_variance[0]
    if variance.shape != frame.shape:
        variance = ndimage.zoom(variance, [a / b for a, b in zip(frame.shape, variance.shape)],
                                order=1, mode="nearest", grid_mode=True)
    plt.imsave(out / f"{image.stem}_variance.png", variance, cmap="magma")
    typer.echo(f"wrote {csv} and {out / (image.stem + '_variance.png')}")


def _read_folder(folder: Path, pixel_size: Optional[float],
                 model_scale: Optional[float]) -> np.ndarray:
    """The folder's frames resampled to ``model_scale`` (Å/px) and cropped to one shape.

    Each frame's own scale is ``pixel_size`` when given, else what its file records, else the
    model's scale (with one warning naming how many frames lacked one).
    """
    import numpy as np

    from activescope.microscopy.find.locate import rescale_frame

    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in {folder}")
    frames, unscaled = [], 0
    for path in paths:
        frame, meta = read_image(path)
        scale = pixel_size if pixel_size is not None else meta.get("pixel_size_angstrom")
        if model_scale is not None and scale is None:
            unscaled += 1
        if model_scale is not None and scale is not None:
            frame = rescale_frame(frame, scale / model_scale)
        frames.append(frame)
    if unscaled:
        _warn(f"{unscaled} of {len(paths)} frames record no pixel size and no --pixel-size was "
              f"given: assuming the model's training scale, {model_scale:.4g} Å/px")
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        if model_scale is None:
            raise DataError(f"images in {folder} differ in shape; ELIT needs one frame size")
        height = min(shape[0] for shape in shapes)
        width = min(shape[1] for shape in shapes)
        frames = [frame[:height, :width] for frame in frames]
    return np.stack(frames)


@atoms_app.command()
def iterate(folder: Path = typer.Argument(..., help="folder of unlabelled images"),
            model: Path = typer.Option(..., "--model", help="ensemble checkpoint"),
            out: Path = typer.Option(..., "--out", help="fine-tuned ensemble checkpoint"),
            rounds: int = typer.Option(2), steps: int = typer.Option(100, help="steps per round"),
            batch_size: int = typer.Option(8), crop: int = typer.Option(128),
            lr: float = typer.Option(3e-4), seed: int = typer.Option(0),
            pixel_size: Optional[float] = typer.Option(
                None, "--pixel-size", help="Å per pixel of every image (default: read from each "
                "file; else the model's training scale, with a warning)"),
            species: str = typer.Option("lattice", "--species", help="pseudo-label classes: "
                                        "lattice (per sublattice of the fitted lattice) or "
                                        "network (the members' consensus class)"),
            max_uncertainty: float = typer.Option(
                0.1, help="pseudo-label rule, in [0, 1): an atom is confident when at least "
                "1 - this share of members finds it (and, for --species network or atoms on "
                "no sublattice, agrees on its class)"),
            max_spread: float = typer.Option(0.12, help="pseudo-label rule: largest spread "
                                             "of the members' positions of a confident atom, Å"),
            max_pixel_std: float = typer.Option(0.2, help="pixels whose atom probability "
                                                "varies across members by more (std) are "
                                                "ignored"),
            label_radius: float = typer.Option(0.36, help="radius of a pseudo-label disk, Å"),
            ignore_radius: float = typer.Option(0.6, help="radius ignored around an "
                                                "unconfident atom, Å"),
            sim_share: float = typer.Option(0.25, help="share of each batch that is fresh "
                                            "simulated frames of the model's lattice (domain-"
                                            "randomised), in [0, 1); 0: pseudo-labels only"),
            threads: Optional[int] = _THREADS) -> None:
    """Ensemble iterative training (ELIT): self-train the ensemble on unlabelled frames.

    Frames are resampled to the model's training scale (and cropped to one shape) first.
    Distances of the pseudo-label rule are in Å, converted at the model's scale."""
    from activescope.microscopy.ensemble.elit import PseudoLabelRule
    from activescope.microscopy.ensemble.elit import iterate as run_elit
    from activescope.microscopy.nets.checkpoint import load_checkpoint, save_checkpoint
    from activescope.microscopy.sim.simulate import randomized_config
    from activescope.microscopy.training.trainer import TrainConfig

    _set_threads(threads)
    _check_pixel_size(pixel_size)
    members, card = load_checkpoint(model)
    if len(members) < 2:
        raise DataError(f"{model} holds one model; ELIT needs an ensemble checkpoint "
                        f"(make one from it with `atoms ensemble-train --init {model}`)")
    scale = card.pixel_size or 1.0
    rule = PseudoLabelRule(max_uncertainty=max_uncertainty, max_spread_px=max_spread / scale,
                           max_pixel_std=max_pixel_std, label_radius_px=label_radius / scale,
                           ignore_radius_px=ignore_radius / scale, species=species)
    if not 0.0 <= sim_share < 1.0:
        raise DataError(f"--sim-share must lie in [0, 1), got {sim_share}")
    sim = None
    if sim_share > 0 and card.lattice is not None:
        sim = randomized_config(lattice=card.lattice, pixel_size=(
            scale * (1 - PIXEL_SIZE_SPREAD), scale * (1 + PIXEL_SIZE_SPREAD)))
    elif sim_share > 0:
        _warn(f"{model.name} records no lattice: no simulated frames are mixed in")
    frames = _read_folder(folder, pixel_size, card.pixel_size)
    multiple = members[0].size_multiple
    crop = min(crop, *frames.shape[1:]) // multiple * multiple
    if crop < multiple:
        raise DataError(f"frames {frames.shape[1:]} are too small to train on (< {multiple} px)")
    config = TrainConfig(steps=steps, batch_size=batch_size, crop_size=crop, learning_rate=lr,
                         seed=seed)
    check_destination(out, folder=False)
    with _progress(f"ELIT {rounds} round(s) x {len(members)} members") as callback:
        result = run_elit(members, card.classes, frames, rounds, config, rule, sim, sim_share,
                          callback=callback, lattice=card.lattice, pixel_size=card.pixel_size)
    card.training["elit"] = {"rounds": rounds, "steps": steps, "frames": len(frames),
                             "rule": vars(rule), "sim_share": sim_share if sim else 0.0}
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
