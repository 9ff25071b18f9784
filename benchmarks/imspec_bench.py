"""im2spec benchmark (issue #11): held-out spectrum prediction from image patches on the digital
twin and on the real BEPS PbTiO3 loops, against a nearest-neighbour-patch and a mean-spectrum
baseline, with a figure of predicted versus measured spectra.

Split: blocks of the grid held out (25 %), with a guard band of half a patch around them
(evaluate.block_split), drawn per seed; training is seeded with the same seed. Relative error
= RMSE / RMS deviation of the held-out spectra from the training mean (mean baseline = 1).
The twin is also scored against its noise-free spectra ("vs clean"); the BEPS loops, which are
noisy (the first principal component holds 9 % of the variance), also against loops denoised
by their first 4 principal components ("vs denoised", an unsupervised PCA over all loops).

    python benchmarks/imspec_bench.py [--seeds 3] [--epochs 15] [--twin-size 160] [--out bench-out/imspec]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from activescope.instruments.imspec_data import Pairs, beps_pairs, twin_pairs  # noqa: E402
from activescope.microscopy.imspec.evaluate import evaluate_split  # noqa: E402
from activescope.microscopy.imspec.train import ImSpecTrainConfig  # noqa: E402

BEPS = Path(__file__).resolve().parents[1] / "data" / "beps_pto_50x50.h5"


def pca_denoise(spectra: np.ndarray, k: int = 4) -> np.ndarray:
    mean = spectra.mean(axis=0)
    _, _, vt = np.linalg.svd(spectra - mean, full_matrices=False)
    return (spectra - mean) @ vt[:k].T @ vt[:k] + mean


def run(name: str, data: Pairs, reference: np.ndarray, config: ImSpecTrainConfig, block: int, guard: int,
        seeds: int, out: Path) -> dict:
    rows = []
    for seed in range(seeds):
        scores = evaluate_split(data.patches, data.spectra, data.rows, data.cols, config, block, guard, seed=seed,
                                reference=reference)
        rows.append({"seed": seed, "relative": scores.relative, "relative_reference": scores.relative_reference,
                     "n_train": scores.n_train, "n_test": scores.n_test, "train_s": scores.train_seconds})
        if seed == 0:
            figure(name, data, scores, out / f"{name}_im2spec.png")
    methods = rows[0]["relative"].keys()
    median = {key: {m: float(np.median([r[key][m] for r in rows])) for m in methods}
              for key in ("relative", "relative_reference")}
    return {"n_pairs": len(data.rows), "per_seed": rows, "median": median}


def figure(name: str, data: Pairs, scores, path: Path) -> None:
    picks = np.random.default_rng(0).choice(len(scores.test_index), 6, replace=False)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    for ax, pick in zip(axes.ravel(), picks):
        index = scores.test_index[pick]
        ax.plot(data.axis, data.spectra[index], color="0.6", lw=1, label="measured")
        if data.clean is not None:
            ax.plot(data.axis, data.clean[index], color="k", lw=1, ls=":", label="noise-free")
        ax.plot(data.axis, scores.predicted[pick], color="C3", lw=1.5, label="im2spec")
        ax.plot(data.axis, scores.nearest[pick], color="C0", lw=1, ls="--", label="nearest patch")
        ax.set_title(f"held out: row {data.rows[index]}, col {data.cols[index]}", fontsize=9)
        ax.set_xlabel(data.axis_unit)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{name}: predicted vs measured spectra at random held-out positions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--twin-size", type=int, default=160, help="twin overview side, px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-out/imspec"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    config = ImSpecTrainConfig(epochs=args.epochs, latent_dim=8, hidden=128)
    twin = twin_pairs(window=9, step=2, size=args.twin_size, seed=0)
    result = {"twin": run("twin", twin, twin.clean, config, block=16, guard=4, seeds=args.seeds, out=args.out)}
    beps_config = ImSpecTrainConfig(epochs=10, latent_dim=4, hidden=64)
    for image in ("mean", "loop_area"):
        beps = beps_pairs(BEPS, window=5, image=image)
        result[f"beps_{image}"] = run(f"beps_{image}", beps, pca_denoise(beps.spectra), beps_config, block=10,
                                      guard=2, seeds=args.seeds, out=args.out)
    (args.out / "imspec_bench.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v["median"] | {"n_pairs": v["n_pairs"]} for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
