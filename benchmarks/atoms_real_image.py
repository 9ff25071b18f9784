"""Real-image sanity check: an experimental HAADF-STEM frame of SrTiO3 (atomap's test data,
`data/srtio3_adf_atomap.hspy`, 400 x 380 px, 0.0933 Å/px: the file's scale 0.0093 is in nm).

There is no ground truth, so the check is internal consistency: how many columns are found,
how many sit on a fitted sublattice, how pure each sublattice is in the network's own classes
(a network that keys on the lattice labels a sublattice with one species), and an overlay
figure. The frame is SrTiO3 seen along [110] (bright Sr-O and dimmer Ti columns 1.95 Å apart,
2.76 Å across; faint O2 columns between the Ti): the model is trained on simulated
``srtio3_110`` frames (``--lattice srtio3`` tries the [001] model instead).

    python benchmarks/atoms_real_image.py [--model srtio3.safetensors] [--out bench-out/atoms-real]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from activescope.microscopy.find.locate import nearest_neighbour_spacing
from activescope.microscopy.find.overlay import save_overlay
from activescope.microscopy.find.predict import Predictor
from activescope.microscopy.io import read_image
from activescope.microscopy.nets.checkpoint import load_checkpoint, save_checkpoint
from activescope.microscopy.sim.simulate import lattice_classes, randomized_config
from activescope.microscopy.training.trainer import TrainConfig, train_on_simulation

FRAME = Path(__file__).resolve().parents[1] / "data" / "srtio3_adf_atomap.hspy"
PIXEL_SIZE_A = 0.09326  # the file records 0.009326 without a unit: nm
MODEL_SCALE = 0.12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-out/atoms-real"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lattice", default="srtio3_110", choices=["srtio3_110", "srtio3"])
    parser.add_argument("--figure", type=Path,
                        default=Path("benchmarks/figures/atoms_real_srtio3_overlay.png"))
    args = parser.parse_args()
    classes = lattice_classes(args.lattice)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        sim = randomized_config(lattice=args.lattice,
                                pixel_size=(0.9 * MODEL_SCALE, 1.1 * MODEL_SCALE))
        trained = train_on_simulation(sim, TrainConfig(steps=args.steps, batch_size=8),
                                      val_frames=0, device="cpu")
        model, card = trained.model, trained.card
        save_checkpoint(args.out / f"{args.lattice}.safetensors", model, card)
    else:
        models, card = load_checkpoint(args.model, classes, "cpu")
        model = models[0]
    image, _ = read_image(FRAME)
    found = {}
    for species in ("network", "lattice"):
        finder = Predictor(model, classes, "cpu", species=species, lattice=args.lattice,
                           pixel_size=card.pixel_size)
        found[species] = finder.find_at_scale(image, PIXEL_SIZE_A, card.pixel_size)
    atoms = found["lattice"]
    on = atoms["sublattice"].to_numpy() >= 0
    purity = {}
    for s in np.unique(atoms["sublattice"][on]):
        own = atoms["cls_network"][atoms["sublattice"] == s]
        purity[int(s)] = {"atoms": int(len(own)),
                          "network_majority_share": float(own.value_counts(normalize=True).iloc[0]),
                          "class": classes[int(atoms["cls"][atoms["sublattice"] == s].iloc[0])]}
    summary = {
        "atoms": int(len(atoms)),
        "on_a_sublattice": float(on.mean()),
        "nearest_neighbour_A": float(nearest_neighbour_spacing(
            atoms[["x", "y"]].to_numpy()) * PIXEL_SIZE_A),
        "counts_lattice": {classes[int(c)]: int(n) for c, n in
                           atoms["cls"].value_counts().sort_index().items()},
        "counts_network": {classes[int(c)]: int(n) for c, n in
                           found["network"]["cls"].value_counts().sort_index().items()},
        "sublattices": purity,
        "network_agrees_with_sublattice": float((atoms["cls"] == atoms["cls_network"]).mean()),
    }
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    save_overlay(image, atoms, args.figure, classes=classes, dpi=100,
                 title=f"SrTiO3 [110], experimental ADF ({args.lattice} model): "
                       f"{len(atoms)} columns")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
