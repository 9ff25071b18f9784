"""`activescope atoms embed-train` and `activescope atoms embed`: invariant VAEs on atom patches.

Like the other `atoms` commands these only parse options and call the library; torch, pandas
and matplotlib are imported inside the commands so `--help` stays cheap. Bad input raises
DataError (one line, exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from activescope.engine.errors import DataError
from activescope.microscopy.io import check_destination, read_image

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_BORDER = typer.Option("drop", "--border", help="atoms whose patch crosses the frame's edge: "
                       "drop (left out, counted) or reflect (kept, the frame mirrored at its edge)")


def _frame_scale(meta: dict, pixel_size: Optional[float], fallback: Optional[float], image: Path) -> float:
    """Å per pixel of the frame: the option, the file, else `fallback` (a finder's scale)."""
    if pixel_size is not None and not pixel_size > 0:
        raise DataError(f"--pixel-size must be a positive number of Å per pixel, got {pixel_size}")
    scale = pixel_size or meta.get("pixel_size_angstrom") or fallback
    if not scale:
        raise DataError(f"{image.name} records no pixel size: give --pixel-size (Å per pixel)")
    return float(scale)


def _atoms(frame: "np.ndarray", meta: dict, image: Path, atoms: Optional[Path], finder: Optional[Path],
           pixel_size: Optional[float]) -> tuple["pd.DataFrame", float, list[str] | None]:
    """(atom table, frame Å/px, class names or None) from --atoms CSV or by running --finder."""
    from activescope.microscopy.find.locate import read_atoms

    if (atoms is None) == (finder is None):
        raise DataError("give exactly one of --atoms (an atom table CSV) and --finder (an atom-finder checkpoint)")
    if atoms is not None:
        return read_atoms(atoms), _frame_scale(meta, pixel_size, None, image), None
    from activescope.microscopy.find.predict import Predictor
    from activescope.microscopy.nets.checkpoint import read_card

    card = read_card(finder)
    scale = _frame_scale(meta, pixel_size, card.pixel_size, image)
    predictor = Predictor.from_checkpoint(finder)
    return predictor.find_at_scale(frame, scale, card.pixel_size or scale), scale, list(predictor.classes)


def embed_train(out: Path = typer.Argument(..., help="invariant-VAE checkpoint to write (.safetensors)"),
                images: list[Path] = typer.Argument(None, help="real images to train on (atoms found by --finder); "
                                                   "none: simulated frames of --lattice"),
                finder: Optional[Path] = typer.Option(None, "--finder", help="atom-finder checkpoint for IMAGES"),
                lattice: str = typer.Option("mos2", help="lattice of the simulated frames (no IMAGES)"),
                frames: int = typer.Option(16, help="simulated frames (no IMAGES)"),
                size: int = typer.Option(256, help="simulated frame side, px"),
                window: Optional[float] = typer.Option(None, help="patch width, Å (default 2.2 nearest-neighbour "
                                                       "spacings of the lattice)"),
                side: int = typer.Option(16, help="patch pixels per axis"),
                latent: int = typer.Option(2, help="latent dimensions besides rotation and translation"),
                rotation: bool = typer.Option(True, help="rotation latent (off: a plain VAE)"),
                translation: bool = typer.Option(False, help="translation latent"),
                conditional: bool = typer.Option(False, help="condition encoder and decoder on the atom class"),
                epochs: int = typer.Option(10), batch_size: int = typer.Option(128), lr: float = typer.Option(1e-3),
                consistency: float = typer.Option(20.0, help="rotation-consistency weight (0: plain rVAE objective)"),
                hidden: int = typer.Option(64, help="network width"),
                pixel_size: Optional[float] = typer.Option(None, "--pixel-size", help="Å per pixel of IMAGES"),
                border: str = _BORDER, seed: int = typer.Option(0),
                threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads")) -> None:
    """Train a rotation-invariant VAE (rVAE) on atom-centred patches and save it."""
    import numpy as np

    from activescope.microscopy.cli import _progress, _set_threads
    from activescope.microscopy.find.locate import lattice_spacing_angstrom
    from activescope.microscopy.ivae.data import WINDOW_SPACINGS, simulated_patches
    from activescope.microscopy.ivae.models import IVAEShape
    from activescope.microscopy.ivae.patches import extract_patches
    from activescope.microscopy.ivae.train import IVAETrainConfig, save_ivae, train_ivae
    from activescope.microscopy.nets.checkpoint import read_card
    from activescope.microscopy.sim.lattices import LATTICES, lattice_classes
    from activescope.microscopy.sim.simulate import SimConfig

    _set_threads(threads)
    if images:
        if finder is None:
            raise DataError("training on IMAGES needs --finder (an atom-finder checkpoint) to locate the atoms")
        lattice = read_card(finder).lattice or lattice
    elif lattice not in LATTICES:
        raise DataError(f"unknown lattice {lattice!r}; choose one of {', '.join(LATTICES)}")
    window_A = window or WINDOW_SPACINGS * lattice_spacing_angstrom(lattice)
    check_destination(out, folder=False)
    if images:
        parts, labels, classes = [], [], None
        for path in images:
            frame, meta = read_image(path)
            table, scale, classes = _atoms(frame, meta, path, None, finder, pixel_size)
            cut = extract_patches(frame, table.x.to_numpy(), table.y.to_numpy(), window_A / scale, side, border)
            parts.append(cut.patches)
            labels.append(table.cls.to_numpy()[cut.kept])
        patches, cls = np.concatenate(parts), np.concatenate(labels)
        source = {"images": [p.name for p in images], "finder": finder.name}
    else:
        data = simulated_patches(SimConfig(lattice=lattice, size=size, vacancy_prob=0.05, dopant_prob=0.03),
                                 frames, window_A, side, seed, border)
        classes = lattice_classes(lattice)
        names = {name: index for index, name in enumerate(np.unique(data.names))}
        patches, cls = data.patches, np.array([names[n] for n in data.names])
        source = {"lattice": lattice, "frames": frames, "site_types": list(names)}
    if len(patches) < 2:
        raise DataError(f"only {len(patches)} atom patch(es) to train on; give more or larger images")
    shape = IVAEShape(side=side, latent_dim=latent, rotation=rotation, translation=translation, hidden=hidden,
                      n_classes=int(cls.max()) + 1 if conditional else 0)
    config = IVAETrainConfig(epochs=epochs, batch_size=min(batch_size, len(patches)), lr=lr, consistency=consistency,
                             seed=seed)
    card = {"window_A": window_A, "lattice": lattice, "classes": classes, "source": source}
    with _progress(f"rVAE on {len(patches)} patches" if rotation else f"VAE on {len(patches)} patches") as callback:
        trained = train_ivae(patches, shape, config, cls if conditional else None, card, callback)
    save_ivae(out, trained)
    typer.echo(f"trained on {len(patches)} patches in {trained.seconds:.1f} s, final loss {trained.history[-1]:.2f}")
    typer.echo(f"saved {out}")


def embed(image: Path = typer.Argument(..., help="npy/tif/png/dm3/dm4/emd/hspy image"),
          model: Path = typer.Option(..., "--model", help="invariant-VAE checkpoint (atoms embed-train)"),
          atoms: Optional[Path] = typer.Option(None, "--atoms", help="atom table CSV (x, y in px), e.g. from atoms find"),
          finder: Optional[Path] = typer.Option(None, "--finder", help="atom-finder checkpoint to find the atoms with"),
          out: Path = typer.Option(Path("atoms-out"), "--out", help="output folder"),
          pixel_size: Optional[float] = typer.Option(None, "--pixel-size", help="Å per pixel (default: from the file)"),
          border: str = _BORDER, threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads")) -> None:
    """Per-atom latent coordinates: writes <name>_latent.csv (the atom table plus z0.., z_std,
    angle_deg, shift_x/y) and <name>_latent.png (latent map with example patches)."""
    import numpy as np

    from activescope.microscopy.cli import _set_threads
    from activescope.microscopy.find.locate import save_atoms
    from activescope.microscopy.ivae.figure import latent_figure
    from activescope.microscopy.ivae.patches import extract_patches
    from activescope.microscopy.ivae.train import Embedder, load_ivae

    _set_threads(threads)
    net, card = load_ivae(model)
    frame, meta = read_image(image)
    table, scale, classes = _atoms(frame, meta, image, atoms, finder, pixel_size)
    check_destination(out, folder=True)
    cut = extract_patches(frame, table.x.to_numpy(), table.y.to_numpy(), card["window_A"] / scale,
                          net.shape.side, border)
    if not cut.kept.any():
        raise DataError(f"no atom of {image.name} lies far enough from the border for a {card['window_A']:.2f} Å "
                        f"patch (use --border reflect)")
    kept = table[cut.kept].reset_index(drop=True)
    if net.shape.n_classes and ("cls" not in kept or kept.cls.max() >= net.shape.n_classes):
        raise DataError(f"this class-conditioned model needs a cls column with classes below {net.shape.n_classes}")
    cls = kept.cls.to_numpy() if net.shape.n_classes else None
    latent = Embedder(net).embed(cut.patches, cls)
    result = kept.drop(columns=[c for c in latent.columns if c in kept.columns]).join(latent)
    csv = save_atoms(result, out / f"{image.stem}_latent.csv")
    names = card.get("classes") or classes
    labels = (np.array([names[int(c)] for c in kept.cls]) if names and "cls" in kept and kept.cls.max() < len(names)
              else kept.cls.to_numpy() if "cls" in kept else np.zeros(len(kept), dtype=int))
    z = latent[[c for c in latent.columns if c.startswith("z") and c != "z_std"]].to_numpy()
    z = z if z.shape[1] >= 2 else np.column_stack([z[:, 0], latent.get("angle_deg", np.zeros(len(z)))])
    png = latent_figure(z, labels, cut.patches, out / f"{image.stem}_latent.png", f"{image.stem}: {len(kept)} atoms",
                        "class", frame, kept[["x", "y"]].to_numpy())
    typer.echo(f"embedded {len(kept)} atoms ({cut.n_dropped} dropped at the border)")
    typer.echo(f"wrote {csv}")
    typer.echo(f"wrote {png}")
