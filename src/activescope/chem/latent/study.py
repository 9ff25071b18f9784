"""`activescope latent compare`: VAE latent versus DKL latent for a QM9 target.

1. The pool is QM9 (or a seeded subset) as one-hot SELFIES (`chem.selfies`).
2. A sequence VAE (`models.vae`) is trained on it without labels (a held-out fraction scores its
   reconstruction; prior samples are decoded to score validity), or loaded from `vae.path`.
3. Per seed, two campaigns with the same protocol (random initial design, batches, budget,
   acquisition): ``gp_vae``, an exact GP on the VAE's 2-D latent means, and ``dkl``, deep kernel
   learning on the one-hot input. The DKL latent is embedded after every round (snapshots).
4. After each campaign a fresh model of its kind is fitted on all its measurements and scored on
   a seeded sample of unmeasured molecules: k-NN R² of the target from its 2-D latent, σ–|error|
   Spearman, accuracy and calibration; exclusion regions of its latent map (`analysis`).
5. Optionally, latent points of highest acquisition under the GP-on-VAE are decoded into SELFIES
   and counted: valid, novel, predicted beyond the pool's top-k threshold.

Outputs in the study directory: metrics.json, scores.csv, curves.csv, snapshots.csv, maps.npz,
candidates.csv, the campaigns' run records under runs/, vae.safetensors and report.html.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from ...engine.campaign import Campaign
from ...engine.errors import DataError, RunStateError
from ...engine.metrics import (
    recall_curve,
    regression_summary,
    top_fraction_recall,
    top_k_threshold,
)
from ...engine.pool import Pool, build_pool
from ...models import build_model
from ...models.vae import VAE, TrainConfig, VAEConfig, VAETrainer, read_card
from .. import selfies
from ..qm9 import resolve_target
from . import analysis, report
from .spec import LatentSpec

STRATEGIES = ("gp_vae", "dkl")


@dataclass
class StudyPool:
    """The one-hot SELFIES pool with its target, sample rows and vocabulary."""

    pool: Pool
    target: str
    y: np.ndarray
    alphabet: list[str]
    length: int
    sample: np.ndarray


def load_pool(spec: LatentSpec) -> StudyPool:
    """QM9 as one-hot SELFIES (the alphabet and length of `vae.path` when given)."""
    target = resolve_target(spec.data.target)
    features: dict = {"kind": "selfies", "max_length": spec.data.max_length}
    if spec.vae.path is not None:
        card = read_card(spec.vae.path)
        if "alphabet" not in card.get("metadata", {}):
            raise DataError(f"{spec.vae.path}: the VAE was not trained on SELFIES (its card has no alphabet)")
        features |= {"max_length": card["config"]["seq_len"], "alphabet": card["metadata"]["alphabet"]}
    pool = build_pool("qm9", features=[features], subset=spec.data.subset, subset_seed=spec.data.subset_seed)
    alphabet, length = selfies.vocabulary(pool.feature_names)
    if len(pool) < spec.campaign.budget + 10:
        raise DataError(f"the pool has {len(pool)} molecules: too few for a budget of {spec.campaign.budget}")
    n_sample = min(spec.analysis.max_points, len(pool))
    sample = np.sort(np.random.default_rng([spec.data.subset_seed, 3]).choice(len(pool), n_sample, replace=False))
    return StudyPool(pool, target, pool.labels[target].to_numpy(float), alphabet, length, sample)


def train_vae(spec: LatentSpec, data: StudyPool, out: Path, log) -> tuple[VAE, dict]:
    """Train (or load) the VAE; its metrics: held-out reconstruction and prior-sample quality."""
    options = spec.vae
    order = np.random.default_rng([options.seed, 11]).permutation(len(data.pool))
    n_hold = max(2, int(round(options.holdout * len(order))))
    held, train = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    t0 = time.perf_counter()
    if options.path is not None:
        vae = VAE.load(options.path)
    else:
        config = VAEConfig(seq_len=data.length, n_tokens=len(data.alphabet), latent_dim=options.latent_dim, hidden=options.hidden)
        batch = options.batch_size or int(np.clip(len(train) // 100, 64, 1024))
        training = TrainConfig(epochs=options.epochs, batch_size=batch, lr=options.lr, beta=options.beta,
                               kl_warmup_epochs=options.kl_warmup_epochs, seed=options.seed)
        X = data.pool.X
        vae = VAETrainer(config, training).fit(
            X[train], X[held[:2000]], metadata={"alphabet": data.alphabet, "features": "selfies"},
            on_epoch=lambda row: log(f"VAE epoch {row['epoch']}: loss {row['loss']:.2f}, token accuracy "
                                     f"{row.get('val_token_accuracy', float('nan')):.3f} ({row['seconds']:.1f} s)"))
        vae.save(out / "vae.safetensors")
    seconds = time.perf_counter() - t0
    accuracy = vae.reconstruction_accuracy(data.pool.X[held])
    decoded = selfies.tokens_to_smiles(vae.sample(options.samples, seed=options.seed), data.alphabet)
    quality = selfies.sample_quality(decoded, data.pool.info["smiles"].tolist())
    history = vae.card.get("training", {}).get("history", [])
    return vae, {"trained": options.path is None, "train_seconds": seconds, "train_molecules": int(len(train)),
                 "held_out": int(len(held)), "token_accuracy": accuracy["token"], "molecule_accuracy": accuracy["sequence"],
                 "prior_samples": options.samples, **{f"sample_{k}": v for k, v in quality.items()},
                 "epochs": len(history), "seconds_per_epoch": float(np.median([h["seconds"] for h in history])) if history else None,
                 "history": history}


def _campaign_spec(spec: LatentSpec, data: StudyPool, strategy: str, seed: int) -> dict:
    kind, options = ("gp", spec.models.gp) if strategy == "gp_vae" else ("dkl", spec.models.dkl)
    return {"name": f"{spec.name}-{strategy}-seed{seed}", "seed": seed,
            "target": {"column": data.target, "goal": spec.data.goal}, "model": {"kind": kind, **options},
            "acquisition": {**spec.campaign.acquisition, "q": spec.campaign.q},
            "initial": {"n": spec.campaign.initial, "method": "random"}, "stop": {"budget": spec.campaign.budget}}


def run_campaign(spec: LatentSpec, data: StudyPool, pool: Pool, strategy: str, seed: int, run_dir: Path,
                 snapshots: list | None, advance) -> tuple[list[str], np.ndarray, float]:
    """One campaign to its budget: measured ids and values in order and its seconds. With
    `snapshots` (DKL), the latent of the sample and of the training molecules after each fit."""
    t0 = time.perf_counter()
    with Campaign.create(run_dir, _campaign_spec(spec, data, strategy, seed), pool=pool) as campaign:
        while True:
            fitted = len(campaign.store.training_data()[0])
            if not campaign.step():
                break
            advance()
            if snapshots is not None and campaign.model is not None:
                rows = pool.index_of(campaign.store.training_data()[0][:fitted])
                snapshots.append((fitted, campaign.model.embed(pool.X[data.sample]), campaign.model.embed(pool.X[rows])))
        ids, values = campaign.store.training_data()
    return ids, values, time.perf_counter() - t0


def score(spec: LatentSpec, data: StudyPool, pool: Pool, strategy: str, measured_ids: list[str], values: np.ndarray,
          vae_latent: np.ndarray) -> tuple[dict, dict, object]:
    """Fit the strategy's model on all its measurements; its scores (module doc), the map arrays
    (coordinates, σ and measured mask over sample + measured molecules) and the fitted model."""
    sign = 1.0 if spec.data.goal == "maximize" else -1.0
    kind, options = ("gp", spec.models.gp) if strategy == "gp_vae" else ("dkl", spec.models.dkl)
    measured = pool.index_of(measured_ids)
    model = build_model(kind, **options)
    if hasattr(model, "use_feature_blocks"):
        model.use_feature_blocks(pool.feature_kinds)
    model.fit(pool.X[measured], sign * values)
    drawn = np.union1d(data.sample, measured)
    mean, variance = model.predict(pool.X[drawn])
    mean = sign * np.asarray(mean)
    coords = vae_latent[drawn] if strategy == "gp_vae" else model.embed(pool.X[drawn])
    is_measured = np.isin(drawn, measured)
    unmeasured = ~is_measured
    y = data.y[drawn]
    a = spec.analysis
    scores = {
        "knn_r2": analysis.knn_r2(coords[unmeasured], y[unmeasured], a.knn_k, a.knn_test_fraction, spec.data.subset_seed),
        "sigma_error_spearman": analysis.sigma_error_spearman(y[unmeasured], mean[unmeasured], variance[unmeasured]),
        **{f"model_{k}": v for k, v in regression_summary(y[unmeasured], mean[unmeasured], variance[unmeasured]).items()},
        **{f"exclusion_{k}": v for k, v in analysis.exclusion_regions(coords, is_measured, a.empty_radius, a.grid).items()},
    }
    maps = {"coords": coords.astype(np.float32), "sd": np.sqrt(np.maximum(variance, 0)).astype(np.float32),
            "y": y, "measured": is_measured, "mean": mean.astype(np.float32)}
    return scores, maps, model


def decode_candidates(spec: LatentSpec, data: StudyPool, vae: VAE, model, vae_latent: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """Decode the `candidates` latent grid points of highest UCB under the GP-on-VAE (over the
    sample's bounding box) and count valid, novel and predicted-above-threshold molecules."""
    n = spec.analysis.candidates
    sign = 1.0 if spec.data.goal == "maximize" else -1.0
    beta = float(spec.campaign.acquisition.get("beta", 2.0))
    box = vae_latent[data.sample]
    side = int(min(400, np.ceil(np.sqrt(20 * n))))
    axes = [np.linspace(lo, hi, side) for lo, hi in zip(box.min(axis=0), box.max(axis=0))]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    z = np.zeros((len(grid), vae.config.latent_dim), np.float32)
    z[:, :2] = grid
    mean, variance = model.predict(grid.astype(np.float32))
    chosen = np.argsort(-(np.asarray(mean) + beta * np.sqrt(np.maximum(variance, 0))))[:n]
    tokens = vae.decode(z[chosen])
    smiles = selfies.tokens_to_smiles(tokens, data.alphabet)
    forms = selfies.canonical(smiles)
    known = set(f for f in selfies.canonical(data.pool.info["smiles"].tolist()) if f)
    one_hot = np.eye(len(data.alphabet), dtype=np.float32)[tokens].reshape(len(tokens), -1)
    predicted, pred_var = model.predict(vae.embed(one_hot)[:, :2].astype(np.float32))
    threshold = top_k_threshold(data.y, spec.campaign.top_k, spec.data.goal)
    table = pd.DataFrame({"smiles": [f or "" for f in forms], "valid": [f is not None for f in forms],
                          "novel": [f is not None and f not in known for f in forms],
                          "predicted": sign * np.asarray(predicted), "predicted_sd": np.sqrt(np.maximum(pred_var, 0))})
    table["above_threshold"] = table["valid"] & (sign * table["predicted"] >= sign * threshold)
    unique = table[table["valid"]].drop_duplicates("smiles")
    counts = {"decoded": int(len(table)), "valid": int(table["valid"].sum()), "unique_valid": int(len(unique)),
              "novel_unique": int(unique["novel"].sum()), "novel_above_threshold": int((unique["novel"] & unique["above_threshold"]).sum()),
              "threshold": threshold}
    return unique.sort_values("predicted", ascending=sign < 0).reset_index(drop=True), counts


def run_compare(spec: LatentSpec, out: Path, progress: bool = True, log=print) -> Path:
    """The whole comparison into `out` (refused when it already holds one); the report path."""
    out = Path(out)
    if (out / "metrics.json").exists() or (out / "runs").exists():
        raise RunStateError(f"{out} already holds a latent comparison; choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = load_pool(spec)
    vae, vae_metrics = train_vae(spec, data, out, log)
    vae_latent = vae.embed(data.pool.X)[:, :2]
    pools = {"gp_vae": Pool(ids=data.pool.ids, X=vae_latent.astype(np.float32), labels=data.pool.labels, info=data.pool.info),
             "dkl": data.pool}
    c = spec.campaign
    rounds = 1 + int(np.ceil((c.budget - c.initial) / c.q))
    rows, curves, snapshot_rows, maps, candidates, counts = [], [], [], {}, None, None
    k_all = min(c.top_k, len(data.y))
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("campaigns", total=rounds * len(c.seeds) * len(STRATEGIES))
        for seed in c.seeds:
            for strategy in STRATEGIES:
                snapshots = [] if strategy == "dkl" and seed == c.seeds[0] else None
                ids, values, seconds = run_campaign(spec, data, pools[strategy], strategy, seed, out / "runs" / f"{strategy}-seed{seed}",
                                                    snapshots, lambda: bar.advance(task))
                curve = recall_curve(values, data.y, k_all, spec.data.goal)
                curves.append(pd.DataFrame({"strategy": strategy, "seed": seed, "n": np.arange(1, len(curve) + 1), "recall": curve}))
                scores, arrays, model = score(spec, data, pools[strategy], strategy, ids, values, vae_latent)
                rows.append({"strategy": strategy, "seed": seed, "measurements": len(values), f"top{k_all}_recall": float(curve[-1]),
                             "top1pct_recall": top_fraction_recall(values, data.y, 0.01, spec.data.goal),
                             "campaign_seconds": seconds, **scores})
                if seed == c.seeds[0]:
                    maps[strategy] = arrays
                    if strategy == "gp_vae" and spec.analysis.candidates:
                        candidates, counts = decode_candidates(spec, data, vae, model, vae_latent)
                if snapshots is not None:
                    snapshot_rows = _snapshot_table(spec, snapshots, maps, out)
    scores = pd.DataFrame(rows)
    scores.to_csv(out / "scores.csv", index=False)
    pd.concat(curves).to_csv(out / "curves.csv", index=False)
    if candidates is not None:
        candidates.to_csv(out / "candidates.csv", index=False)
    metrics = _metrics(spec, data, vae_metrics, scores, counts, time.perf_counter() - t_start)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    np.savez_compressed(out / "maps.npz", **{f"{s}_{k}": v for s, arrays in maps.items() for k, v in arrays.items()})
    return report.write_report(out, spec, metrics, scores, pd.concat(curves), snapshot_rows, maps, candidates,
                               data.y, data.y[data.sample])


def _snapshot_table(spec: LatentSpec, snapshots: list, maps: dict, out: Path) -> pd.DataFrame:
    """Exclusion measures of each DKL snapshot (sample + training molecules); the arrays of the
    drawn ones go into `maps["snapshots"]` and snapshots.npz."""
    a = spec.analysis
    rows, kept = [], {}
    picks = set(np.unique(np.linspace(0, len(snapshots) - 1, min(a.snapshots, len(snapshots))).round().astype(int)).tolist())
    for i, (fitted, sample_latent, train_latent) in enumerate(snapshots):
        coords = np.vstack([sample_latent, train_latent])
        measured = np.arange(len(sample_latent), len(coords))
        rows.append({"round": i + 1, "measurements_fitted": fitted, **analysis.exclusion_regions(coords, measured, a.empty_radius, a.grid)})
        if i in picks:
            kept[f"round{i + 1}_sample"], kept[f"round{i + 1}_train"] = sample_latent, train_latent
    np.savez_compressed(out / "snapshots.npz", **kept)
    maps["snapshots"] = kept
    table = pd.DataFrame(rows)
    table.to_csv(out / "snapshots.csv", index=False)
    return table


def _metrics(spec: LatentSpec, data: StudyPool, vae_metrics: dict, scores: pd.DataFrame, counts: dict | None, seconds: float) -> dict:
    numeric = scores.drop(columns=["seed"]).groupby("strategy").agg(["mean", "std"])
    by_strategy = {s: {f"{k}_{stat}": _finite(numeric.loc[s, (k, stat)]) for k, stat in numeric.columns} for s in numeric.index}
    return {"name": spec.name, "target": data.target, "goal": spec.data.goal, "pool_molecules": len(data.pool),
            "sample_molecules": int(len(data.sample)), "selfies_length": data.length, "alphabet_size": len(data.alphabet),
            "seeds": spec.campaign.seeds, "budget": spec.campaign.budget, "top_k": min(spec.campaign.top_k, len(data.y)),
            "vae": vae_metrics, "strategies": by_strategy, "candidates": counts, "seconds": seconds}


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined statistic (sd of one seed) is null."""
    return None if np.isnan(value) else float(value)
