"""Atom-finding throughput at 512² and 1024² on 1 and 2 threads, in one process, side by side:
the AtomAI-style re-implementation (our ``unet``, 16 filters, depth 3, dilated bottleneck: a
re-implementation of AtomAI's U-Net, not AtomAI itself) and the ``lite_unet``, each with the
network alone and with atom finding; the ``lite_unet`` also with species per sublattice (the
``find`` default). Frames/s are medians of ``--repeats`` runs over 2 simulated MoS2 frames.

    python benchmarks/atoms_speed.py [--model bench-out/atoms-multislice/mos2_single.safetensors]

Without ``--model`` a ``lite_unet`` is trained for 150 steps first (weights change how many
atoms the finder sees, not the network's cost). Writes ``--out``/speed.md and speed.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from activescope.microscopy.bench import median_fps
from activescope.microscopy.find.predict import Predictor
from activescope.microscopy.nets.checkpoint import load_checkpoint
from activescope.microscopy.nets.unet import build_network
from activescope.microscopy.sim.simulate import (
    SimConfig,
    lattice_classes,
    simulate_batch,
)
from activescope.microscopy.training.trainer import TrainConfig, train_on_simulation

CLASSES = lattice_classes("mos2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-out/atoms-speed"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.model is not None:
        lite = load_checkpoint(args.model, CLASSES, "cpu")[0][0]
    else:
        torch.set_num_threads(1)
        lite = train_on_simulation(SimConfig(lattice="mos2"), TrainConfig(steps=150, batch_size=8),
                                   val_frames=0, device="cpu").model
    torch.manual_seed(0)
    baseline = build_network("unet", n_classes=len(CLASSES), base_filters=16).eval()
    finders = {
        "AtomAI-style re-implementation (unet, 16 filters)": Predictor(
            baseline, CLASSES, "cpu", species="network"),
        "lite_unet": Predictor(lite, CLASSES, "cpu", species="network"),
        "lite_unet + species per sublattice (find default)": Predictor(
            lite, CLASSES, "cpu", lattice="mos2", pixel_size=0.12),
    }
    rows = []
    for size in (512, 1024):
        images = simulate_batch(SimConfig(lattice="mos2", size=size, pixel_size=0.12), 2,
                                seed=99)[0]
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, finder in finders.items():
                row = {"size": size, "threads": threads, "model": name,
                       "with_atoms_fps": median_fps(lambda: finder.find(images), 2,
                                                    args.repeats)}
                if "species" not in name:
                    row["network_only_fps"] = median_fps(lambda: finder.probabilities(images),
                                                         2, args.repeats)
                rows.append(row)
                print(row, flush=True)
    (args.out / "speed.json").write_text(json.dumps(rows, indent=1))
    lines = ["| size | threads | model | frames/s with atoms | frames/s network only |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['threads']} | {r['model']} | {r['with_atoms_fps']:.2f} | "
              + (f"{r['network_only_fps']:.2f}" if "network_only_fps" in r else "–") + " |"
              for r in rows]
    (args.out / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
