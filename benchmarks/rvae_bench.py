"""Invariant VAE benchmark (issue #11): rotation sensitivity and site-type separation of the
rVAE against a plain VAE and raw pixels, training and embedding speed, and a qualitative
latent map of the real SrTiO3 image.

Data: simulated MoS2 frames (256², random lattice rotation per frame, vacancies 8 %, dopants
4 %); site types are the column compositions Mo, S2, S (one S missing) and W (dopant). Train
and test patches come from different frames. Per seed: rVAE (rotation latent) and plain VAE
(same networks, no pose latents), both 2-D z, same epochs.

- rotation sensitivity: median |z(rotated patch) - z(patch)| / RMS spread of z on test
  patches rotated by random angles (checks.rotation_sensitivity);
- k-NN (k = 5) accuracy and balanced accuracy (mean per-type recall) of the site type from z,
  and from the raw pixels;
- speed: rVAE training on `--speed-patches` patches for `--speed-epochs` (throughput in
  patch-epochs per second), and embedding every atom of a 1,024² frame (patch gather +
  encoder), median of 5.

    python benchmarks/rvae_bench.py [--seeds 3] [--train-frames 40] [--epochs 8] [--out bench-out/rvae]
    python benchmarks/rvae_bench.py --toy [--seeds 3]      # toy motifs: rVAE vs plain VAE only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from activescope.microscopy.io import read_image
from activescope.microscopy.ivae.checks import (
    knn_accuracy,
    rotation_sensitivity,
    toy_patches,
)
from activescope.microscopy.ivae.data import default_window, simulated_patches
from activescope.microscopy.ivae.figure import latent_figure
from activescope.microscopy.ivae.models import IVAEShape
from activescope.microscopy.ivae.patches import extract_patches
from activescope.microscopy.ivae.train import Embedder, IVAETrainConfig, train_ivae
from activescope.microscopy.sim.simulate import SimConfig, simulate_frame

SRTIO3 = Path(__file__).resolve().parents[1] / "data" / "srtio3_adf_atomap.hspy"
SRTIO3_PIXEL_A = 0.09326
SRTIO3_SPACING_A = 1.95
SIDE = 16


def sim_config(size: int = 256) -> SimConfig:
    return SimConfig(lattice="mos2", size=size, vacancy_prob=0.08, dopant_prob=0.04)


def one_seed(seed: int, train_frames: int, epochs: int, window: float) -> dict:
    train = simulated_patches(sim_config(), train_frames, window, SIDE, seed=1000 * seed)
    test = simulated_patches(sim_config(), 8, window, SIDE, seed=1000 * seed + 500)
    row = {"seed": seed, "n_train": len(train.patches), "n_test": len(test.patches),
           "types": {str(k): int(v) for k, v in zip(*np.unique(test.names, return_counts=True))}}
    config = IVAETrainConfig(epochs=epochs, batch_size=128, seed=seed)
    for name, rotation in (("rvae", True), ("vae", False)):
        trained = train_ivae(train.patches, IVAEShape(side=SIDE, rotation=rotation, translation=False, hidden=64), config)
        embedder = Embedder(trained.model)
        z = embedder.latent(test.patches)[:, :2]
        row[name] = {
            "train_s": trained.seconds,
            "rotation_sensitivity": rotation_sensitivity(lambda p: embedder.latent(p)[:, :2], test.patches, seed),
            "knn_accuracy": knn_accuracy(z, test.names, seed=seed),
            "knn_balanced": knn_accuracy(z, test.names, seed=seed, balanced=True),
            "reconstruction_mse": float(((embedder.reconstruct(test.patches) - test.patches) ** 2).mean()),
        }
        if seed == 0:
            latent_figure(z, test.names, test.patches, OUT / f"mos2_{name}_latent.png", f"MoS2 test atoms, {name}", "site")
    raw = test.patches.reshape(len(test.patches), -1)
    row["raw"] = {"knn_accuracy": knn_accuracy(raw, test.names, seed=seed),
                  "knn_balanced": knn_accuracy(raw, test.names, seed=seed, balanced=True)}
    return row


def speed(n_patches: int, epochs: int, window: float) -> dict:
    frames = int(np.ceil(n_patches / 180))
    data = simulated_patches(sim_config(), frames, window, SIDE, seed=77)
    patches = data.patches[:n_patches]
    trained = train_ivae(patches, IVAEShape(side=SIDE, rotation=True, translation=False, hidden=64),
                         IVAETrainConfig(epochs=epochs, batch_size=128))
    frame = simulate_frame(sim_config(1024), 5)
    embedder = Embedder(trained.model)
    x, y, scale = frame.atoms.x.to_numpy(), frame.atoms.y.to_numpy(), frame.params["pixel_size"]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        cut = extract_patches(frame.image, x, y, window / scale, SIDE)
        embedder.embed(cut.patches)
        times.append(time.perf_counter() - start)
    return {"train_patches": len(patches), "train_epochs": epochs, "train_s": trained.seconds,
            "patch_epochs_per_s": len(patches) * epochs / trained.seconds,
            "embed_1024_atoms": int(cut.kept.sum()), "embed_1024_s_median": float(np.median(times))}


def real_srtio3(epochs: int) -> dict:
    """Columns by local maxima of the smoothed frame (no trained finder needed for a picture),
    an rVAE trained on their patches, the latent map coloured by column brightness."""
    image, _ = read_image(SRTIO3)
    smooth = ndimage.gaussian_filter(image.astype(np.float32), 2.0)
    size = int(0.7 * SRTIO3_SPACING_A / SRTIO3_PIXEL_A)
    peaks = (smooth == ndimage.maximum_filter(smooth, size)) & (smooth > np.percentile(smooth, 40))
    y, x = np.nonzero(peaks)
    cut = extract_patches(image, x, y, 2.2 * SRTIO3_SPACING_A / SRTIO3_PIXEL_A, SIDE)
    trained = train_ivae(cut.patches, IVAEShape(side=SIDE, rotation=True, translation=True, hidden=64),
                         IVAETrainConfig(epochs=epochs, batch_size=64))
    z = Embedder(trained.model).latent(cut.patches)[:, :2]
    centre = smooth[y[cut.kept], x[cut.kept]]
    brightness = np.where(centre > np.median(centre), "bright (Sr-O)", "dim (Ti)")
    latent_figure(z, brightness, cut.patches, OUT / "srtio3_real_latent.png", "real SrTiO3 [110] columns, rVAE",
                  "column", image, np.column_stack([x[cut.kept], y[cut.kept]]))
    return {"columns": int(cut.kept.sum()), "dropped_at_border": cut.n_dropped, "train_s": trained.seconds,
            "knn_brightness_from_z": knn_accuracy(z, brightness)}


def toy(seeds: int) -> list[dict]:
    """The test suite's toy check at benchmark scale: 600 motif patches (atom, dimer, trimer at
    random orientations), 12 px, 20 epochs; rVAE vs plain VAE, scored on 200 new patches."""
    patches, _, _ = toy_patches(600, side=12, kinds=3, seed=0)
    test, kind, _ = toy_patches(200, side=12, kinds=3, seed=5)
    rows = []
    for seed in range(seeds):
        row = {"seed": seed}
        for name, rotation in (("rvae", True), ("vae", False)):
            trained = train_ivae(patches, IVAEShape(side=12, rotation=rotation, translation=False, hidden=32),
                                 IVAETrainConfig(epochs=20, batch_size=32, lr=2e-3, seed=seed))
            embedder = Embedder(trained.model)
            row[name] = {"rotation_sensitivity": rotation_sensitivity(lambda p: embedder.latent(p)[:, :2], test, seed),
                         "knn_accuracy": knn_accuracy(embedder.latent(test)[:, :2], kind, seed=seed),
                         "reconstruction_mse": float(((embedder.reconstruct(test) - test) ** 2).mean())}
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for model in ("rvae", "vae", "raw"):
        keys = rows[0][model].keys()
        out[model] = {k: {"median": float(np.median([r[model][k] for r in rows])),
                          "min": float(np.min([r[model][k] for r in rows])),
                          "max": float(np.max([r[model][k] for r in rows]))} for k in keys}
    return out


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-frames", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--speed-patches", type=int, default=20000)
    parser.add_argument("--speed-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--toy", action="store_true", help="only the toy-motif check (toy())")
    parser.add_argument("--out", type=Path, default=Path("bench-out/rvae"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    if args.toy:
        rows = toy(args.seeds)
        (OUT / "rvae_toy.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows, indent=1))
        return
    window = default_window("mos2")
    rows = []
    for seed in range(args.seeds):
        rows.append(one_seed(seed, args.train_frames, args.epochs, window))
        (OUT / "rvae_bench_seeds.json").write_text(json.dumps(rows, indent=1))
    result = {"window_A": window, "side": SIDE, "epochs": args.epochs, "per_seed": rows, "summary": summary(rows),
              "srtio3": real_srtio3(3 * args.epochs)}
    if not args.skip_speed:
        result["speed"] = speed(args.speed_patches, args.speed_epochs, window)
    (OUT / "rvae_bench.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_seed"}, indent=1))


OUT = Path("bench-out/rvae")

if __name__ == "__main__":
    main()
