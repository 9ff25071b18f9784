"""Autonomous-microscope benchmarks (issue #7): automated experiments on BEPS playback and on the
STEM-EELS digital twin against random and raster scans, decision latency, server round trip.

Usage:
    python benchmarks/microscope_bench.py [--parts beps twin latency roundtrip] [--seeds 5]
        [--first-seed 0] [--budget 300] [--out bench-out/microscope] [--threads 1]
        [--latency-threads 1 2] [--latency-models dkl dkl+raw dkl-res gp] [--latency-prefilter 2000 500]
        [--strategies NAME...] [--conditions CONDITION...] [--quick]

Parts (all by default):

- ``beps``: the repository's 50 x 50 BEPS grid played back (examples/beps_playback.yaml: patches
  of the mean-response overview as features, loop area maximised, 20 random initial loops,
  batches of 5). Ground truth: the loop area of all 2,500 recorded loops. Strategies: DKL + EI
  (the example as shipped: the distance-preserving residual DKL), DKL + UCB, the example's
  earlier DKL (MLP latent + raw-patch kernel) with EI and UCB, GP + EI, GP + UCB, random, raster
  (pool order) and a coarse raster (every third grid point, row by row).
- ``twin``: examples/twin_eels.yaml (peak position of the plasmon maximised over 2,304 probe
  positions, batches of 4, 20 diverse initial positions) with drift off, with the example's drift
  uncorrected and corrected every 20 spectra, and with a stronger drift (`STRONG_DRIFT`)
  uncorrected and corrected, and corrected with selection among the reachable candidates only
  (`InstrumentOracle.reachable`: positions that the correction would push out of the field of view
  are not offered to the acquisition), and both drifts corrected with the probe reaching 0.6 nm
  beyond the overview by beam shift (`BEAM_SHIFT`, as the example ships; the older corrected
  conditions set it to 0). Strategies: DKL + UCB (the example as shipped), GP + UCB, random and
  raster. Ground truth: the scalarized noise-free spectrum at every candidate position as
  the reference overview showed it (`activescope.instruments.truth.twin_truth`).
- ``latency``: fit + pool prediction + batch selection per step with 200 to 300 measured points
  and 10,000 candidates (a 100 x 100 probe grid on the twin), for each of `--latency-models`
  (`LATENCY_MODELS`: the default DKL, as in examples/twin_eels.yaml; the DKL of
  examples/beps_playback.yaml before the residual extractor, with a kernel on the raw patch
  added; the distance-preserving residual DKL that example uses now; the GP), each of
  `--latency-threads` torch thread counts and each `--latency-prefilter` (the acquisition's
  shortlist for the joint batch selection; 2,000 is the engine's default).
- ``roundtrip``: a 1,024-point twin spectrum over HTTP on loopback (a real uvicorn server):
  median over 200 requests after 20 warm-up requests.

Every campaign is a real `Campaign` stepped round by round; after the round that brings the
measurements to 100 and 200, the reconstruction of the property map is scored: the campaign's
own model, copied and refitted on exactly those measurements (its next round's fit), and a fresh
default GP fitted on the same points (the only model random and raster scans have); R² is also
given over the positions not measured by then. Recall counts a selected candidate as found when
its *true* value is among the top 1 % and its measurement succeeded (so noise cannot fake a hit,
under drift a measurement counts for the position it was meant for, and a failed measurement
spends budget and finds nothing); recall after N is after N selections.

The campaign consults `reachable()` before every selection (the engine's default; the other
corrected conditions set `oracle.skip_unreachable: false` to try every position, as before).

Results (CSV, markdown, figures) go to `--out`; finished runs are kept as JSON there, so an
interrupted benchmark resumes where it stopped (delete the folder to start over).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from activescope.bench import strategy_spec
from activescope.engine.assemble import (
    build_instrument,
    build_pool_for,
    build_surrogate,
)
from activescope.engine.campaign import Campaign
from activescope.engine.metrics import recall_curve, regression_summary, top_fraction_k
from activescope.engine.scalarizers import build_scalarizer
from activescope.engine.spec import CampaignSpec, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
BEPS_SPEC = ROOT / "examples" / "beps_playback.yaml"
TWIN_SPEC = ROOT / "examples" / "twin_eels.yaml"
CHECKPOINTS = (100, 200, 250)  # recall reported after this many measurements
SNAPSHOTS = (100, 200)  # map reconstruction scored after this many measurements

# the BEPS example's DKL before the residual extractor: MLP latent + ARD Matern on the raw patch
RAW_PATCH_DKL = {"kind": "dkl", "extractor": "mlp", "hidden": [64, 32], "raw_kernel": "matern"}
BEPS_STRATEGIES: dict[str, dict[str, Any]] = {
    "dkl-ei": {},  # examples/beps_playback.yaml as shipped: the distance-preserving (residual) DKL
    "dkl-ucb": {"acquisition": {"kind": "ucb", "q": 5}},
    "dkl-raw-ei": {"model": RAW_PATCH_DKL},  # the example before the residual extractor
    "dkl-raw-ucb": {"model": RAW_PATCH_DKL, "acquisition": {"kind": "ucb", "q": 5}},
    "gp-ei": {"model": {"kind": "gp"}},
    "gp-ucb": {"model": {"kind": "gp"}, "acquisition": {"kind": "ucb", "q": 5}},
    "random": {"acquisition": {"kind": "random", "q": 5}},
    "raster": {"acquisition": {"kind": "raster", "q": 5}},
    "raster-coarse": {"acquisition": {"kind": "raster", "q": 5}},  # on a pool reordered by `coarse_order`
}
TWIN_STRATEGIES: dict[str, dict[str, Any]] = {
    "dkl-ucb": {},  # examples/twin_eels.yaml as shipped
    "gp-ucb": {"model": {"kind": "gp"}},
    "random": {"acquisition": {"kind": "random", "q": 4}},
    "raster": {"acquisition": {"kind": "raster", "q": 4}},
}
NO_DRIFT = {"drift_velocity_nm_s": [0.0, 0.0], "drift_walk_nm": 0.0}
# Three times the example's linear drift, four times its random walk, and a 0.5 s overview (a 96 x 96
# scan at ~50 us per pixel) so that correcting every 20 spectra does not triple the run time. Chosen
# on seed 100, which is not reported, so that uncorrected drift visibly hurts.
STRONG_DRIFT = {"drift_velocity_nm_s": [0.03, 0.015], "drift_walk_nm": 0.02, "overview_s": 0.5}
# The probe reaches 0.6 nm (the simulated sample's margin, 24 pixels) beyond the 2.4 nm field of
# view by beam shift, so the correction can follow features that drift out of the overview. The
# example ships it; the conditions measured before it existed set it to 0.
BEAM_SHIFT = {"beam_shift_nm": 0.6}
NO_BEAM_SHIFT = {"beam_shift_nm": 0.0}
TWIN_CONDITIONS: dict[str, dict[str, dict[str, Any]]] = {
    "drift off": {"instrument": NO_DRIFT, "oracle": {"drift_every": 0}},
    "drift, uncorrected": {"oracle": {"drift_every": 0}},  # the example's drift: 0.01, 0.005 nm/s + 0.005 nm walk
    # positions out of reach are tried
    "drift, corrected": {"instrument": NO_BEAM_SHIFT, "oracle": {"drift_every": 20, "skip_unreachable": False}},
    "strong drift, uncorrected": {"instrument": STRONG_DRIFT, "oracle": {"drift_every": 0}},
    "strong drift, corrected": {"instrument": STRONG_DRIFT | NO_BEAM_SHIFT, "oracle": {"drift_every": 20, "skip_unreachable": False}},
    # the engine's default: only candidates in reach are offered
    "strong drift, corrected, reachable only": {"instrument": STRONG_DRIFT | NO_BEAM_SHIFT, "oracle": {"drift_every": 20}},
    "strong drift, corrected, beam shift": {"instrument": STRONG_DRIFT | BEAM_SHIFT, "oracle": {"drift_every": 20}},
    "drift, corrected, beam shift": {"oracle": {"drift_every": 20}},  # the example as shipped
}
STRONG_STRATEGIES = ("dkl-ucb", "gp-ucb", "random")  # raster is left out of the strong-drift conditions
REACHABLE_ONLY = {"strong drift, corrected, reachable only"}  # conditions that select among reachable candidates
REACHABLE_STRATEGIES = ("dkl-ucb", "gp-ucb")  # the model-based strategies run in the reachable-only condition
BEAM_SHIFT_STRATEGIES = ("dkl-ucb", "gp-ucb", "random")  # the strategies run with the beam shift
LATENCY_MODELS: dict[str, dict[str, Any]] = {
    "dkl": {"kind": "dkl"},
    "dkl+raw": {"kind": "dkl", "kernel": "matern", "raw_kernel": "matern", "kernel_lr": 0.1},  # the BEPS example's before
    "dkl-res": {"kind": "dkl", "extractor": "residual", "hidden": [64], "kernel": "matern", "kernel_lr": 0.1},  # the BEPS example's
    "gp": {"kind": "gp"},
}
COARSE_STEP = 3  # the coarse raster visits every third grid point in each direction


# ------------------------------------------------------------------------------------------------
# one campaign


def coarse_order(pool: Any) -> np.ndarray:
    """Row order of a probe-grid pool for a coarse raster (see `coarse_order_rc`)."""
    return coarse_order_rc(pool.info["row"].to_numpy(), pool.info["col"].to_numpy())


def coarse_order_rc(rows: np.ndarray, cols: np.ndarray, step: int = COARSE_STEP) -> np.ndarray:
    """Order of grid points (rows, cols) for a coarse raster: the points with row and col
    = step//2 mod step first, row by row, then every other point in the given order."""
    coarse = (rows % step == step // 2) & (cols % step == step // 2)
    first = np.flatnonzero(coarse)
    first = first[np.lexsort((cols[first], rows[first]))]
    return np.concatenate([first, np.flatnonzero(~coarse)])


def selection_recall(selected_truth: np.ndarray, ok: np.ndarray, truth: np.ndarray, goal: str) -> np.ndarray:
    """Top-1 % recall after each selection (a failed measurement spends budget and finds nothing)."""
    return recall_curve(np.where(ok, selected_truth, np.nan), truth, top_fraction_k(len(truth)), goal)


def map_scores(campaign: Campaign, ids: list[str], y: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Map reconstruction from the first measurements (`ids`, values `y`): the campaign's own
    model refitted on them (a deep copy: the campaign itself is untouched) and a fresh default GP.
    Returns {"model": summary, "gp": summary, "model_kind": ..., "pred_model": mean, "pred_gp": mean}."""
    pool = campaign.pool
    X, rows = pool.X, pool.index_of(ids)
    sign = 1.0 if campaign.spec.target.goal == "maximize" else -1.0
    out: dict[str, Any] = {}
    gp = build_surrogate(parse_spec({**campaign.spec.model_dump(mode="json"), "model": {"kind": "gp"}}), pool)
    gp.fit(X[rows], sign * y)
    mean, var = gp.predict(X)
    out["gp"], out["pred_gp"] = regression_summary(truth, sign * mean, var), sign * mean
    if campaign.model is not None:
        model = copy.deepcopy(campaign.model)
        model.fit(X[rows], sign * y)
        mean, var = model.predict(X)
        out["model"], out["pred_model"] = regression_summary(truth, sign * mean, var), sign * mean
        out["model_kind"] = campaign.spec.model.kind
    else:
        out["model"], out["pred_model"], out["model_kind"] = out["gp"], out["pred_gp"], "gp (on the scan's points)"
    return out


def run_one(spec: CampaignSpec, truth_of: Any, pool_order: Any = None) -> dict[str, Any]:
    """Run one campaign to its budget; `truth_of(campaign)` gives the ground truth (pool order).
    `pool_order(pool)` (optional) reorders the spec's pool before the campaign starts."""
    pool = None
    if pool_order is not None:
        instrument = build_instrument(spec)
        built = build_pool_for(spec, instrument)
        pool = built.subset(pool_order(built))
        if hasattr(instrument, "close"):
            instrument.close()
    t0 = time.perf_counter()
    with Campaign.create(None, spec, pool=pool) as campaign:
        truth = truth_of(campaign)
        campaign.pool.labels = pd.DataFrame({spec.target.column: truth})
        snaps: dict[int, dict[str, Any]] = {}
        while campaign.step():
            ids, y = campaign.store.training_data()
            for s in SNAPSHOTS:
                if s not in snaps and len(y) >= s:
                    snaps[s] = map_scores(campaign, ids[:s], y[:s], truth)
        wall_s = time.perf_counter() - t0
        measured = campaign.store.measurements()
        rounds = campaign.store.rounds()
        state = campaign.instrument.state()
        tracker = getattr(campaign.oracle, "tracker", None)
        drift_residual = None
        if tracker is not None and hasattr(campaign.instrument, "drift"):
            t_ref = tracker.history[0][0]
            true_shift = campaign.instrument.drift(state.elapsed_s) - campaign.instrument.drift(t_ref)
            drift_residual = float(np.hypot(*(tracker.drift_at(state.elapsed_s) - true_shift)))
        pool_rows = campaign.pool.index_of(measured["id"])
        info = campaign.pool.info.iloc[pool_rows].reset_index(drop=True)
    ok = (measured["status"] == "measured").to_numpy()
    found_truth = truth[pool_rows][ok]
    curve = selection_recall(truth[pool_rows], ok, truth, spec.target.goal)
    reached = np.flatnonzero(curve >= 0.5)
    values = measured["value"].to_numpy(dtype=float)[ok]
    label_error = np.abs(values - found_truth)  # noise, plus drift where it is not corrected
    best = int(np.argmax(values) if spec.target.goal == "maximize" else np.argmin(values))
    modelled = rounds[(rounds["round"] > 0) & rounds["fit_s"].notna()]
    decision = modelled[["fit_s", "predict_s", "select_s"]].astype(float).sum(axis=1)
    result: dict[str, Any] = {
        "n_selected": len(measured), "n_measured": int(ok.sum()), "n_failed": int((~ok).sum()),
        "unique_ids": bool(measured["id"].is_unique), "acquisitions": int(state.acquisitions),
        "instrument_s": float(state.elapsed_s), "drift_nm": float(np.hypot(*state.drift_nm)),
        "drift_residual_nm": drift_residual, "wall_s": wall_s,
        "unreachable_at_end": int((~campaign.oracle.reachable()).sum()) if hasattr(campaign.oracle, "reachable") else None,
        "n_to_half": int(reached[0] + 1) if reached.size else None,
        "best_true": float(np.max(found_truth)) if spec.target.goal == "maximize" else float(np.min(found_truth)),
        "reported_best_truth": float(found_truth[best]), "label_error_median": float(np.median(label_error)),
        "label_error_last_quarter": float(np.median(label_error[-max(1, len(label_error) // 4):])),
        "median_decision_s": float(decision.median()) if len(decision) else None, "pool_size": len(truth),
        "curve": curve.tolist(),
        "path": {"id": measured["id"].tolist(), "col": info["col"].tolist(), "row": info["row"].tolist(),
                 "x_nm": info["x_nm"].tolist(), "y_nm": info["y_nm"].tolist(),
                 "value": measured["value"].tolist(), "truth": truth[pool_rows].tolist()},
    }
    for n in CHECKPOINTS:
        result[f"recall@{n}"] = float(curve[min(n, len(curve)) - 1]) if len(curve) >= n else None
    for s, snap in snaps.items():
        result[f"map@{s}"] = {"model_kind": snap["model_kind"], "model": snap["model"], "gp": snap["gp"]}
        result[f"pred@{s}"] = {"model": snap["pred_model"].tolist(), "gp": snap["pred_gp"].tolist()}
    return result


# ------------------------------------------------------------------------------------------------
# the matrices


def _beps_truth(campaign: Campaign) -> np.ndarray:
    from activescope.instruments.truth import playback_truth

    return playback_truth(campaign.instrument, campaign.pool)


def _twin_truth(campaign: Campaign) -> np.ndarray:
    from activescope.instruments.drift import reference_of, scan_time
    from activescope.instruments.truth import twin_truth

    scalarizer = campaign.spec.oracle.scalarizer
    reference = reference_of(campaign.instrument)  # the overview probe_grid defined the candidates on
    return twin_truth(campaign.instrument, campaign.pool, build_scalarizer(scalarizer.kind, scalarizer.options()),
                      t_s=scan_time(reference))


def _merge(spec_map: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(spec_map)
    for section, values in overrides.items():
        out[section] = {**out[section], **values}
    return out


def matrix_runs(part: str, args: argparse.Namespace) -> list[tuple[str, str, int, CampaignSpec, Any, Any]]:
    """(condition, strategy, seed, spec, truth_of, pool_order) of every run of a part."""
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = []
    if part == "beps":
        base = load_spec(BEPS_SPEC).model_dump(mode="json")
        base["instrument"]["path"] = str(ROOT / "data" / "beps_pto_50x50.h5")
        base["stop"]["budget"] = args.budget
        base_spec = parse_spec(base, origin=str(BEPS_SPEC))
        for name, overrides in BEPS_STRATEGIES.items():
            if args.strategies and name not in args.strategies:
                continue
            for seed in seeds:
                spec = parse_spec(strategy_spec(base_spec, name, overrides, seed), origin=name)
                order = coarse_order if name == "raster-coarse" else None
                runs.append(("beps", name, seed, spec, _beps_truth, order))
    else:
        base = load_spec(TWIN_SPEC).model_dump(mode="json")
        base["stop"]["budget"] = args.budget
        for condition, overrides in TWIN_CONDITIONS.items():
            base_spec = parse_spec(_merge(base, overrides), origin=f"{TWIN_SPEC} ({condition})")
            for name, strategy in TWIN_STRATEGIES.items():
                if args.strategies and name not in args.strategies:
                    continue
                if condition.startswith("strong") and name not in STRONG_STRATEGIES:
                    continue
                if condition in REACHABLE_ONLY and name not in REACHABLE_STRATEGIES:
                    continue
                if condition.endswith("beam shift") and name not in BEAM_SHIFT_STRATEGIES:
                    continue
                if args.conditions and condition not in args.conditions:
                    continue
                for seed in seeds:
                    spec = parse_spec(strategy_spec(base_spec, name, strategy, seed), origin=name)
                    runs.append((condition, name, seed, spec, _twin_truth, None))
    return runs


def truth_and_ids(spec: CampaignSpec, truth_of: Any, pool_order: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and pool ids (pool order) of a run's spec, without running it."""
    pool = None
    if pool_order is not None:
        built = build_pool_for(spec, build_instrument(spec))
        pool = built.subset(pool_order(built))
    with Campaign.create(None, spec, pool=pool) as campaign:
        return truth_of(campaign), campaign.pool.ids.copy()


def unmeasured_scores(result: dict[str, Any], truth: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    """RMSE and R² of each snapshot's maps over the positions not measured by then (the measured
    ones are nearly exact for a GP, and active strategies measure the extremes that dominate R²)."""
    index = {k: i for i, k in enumerate(ids.tolist())}
    path = result["path"]
    measured = [k for k, v in zip(path["id"], path["value"], strict=False) if v is not None and np.isfinite(v)]
    out = {}
    for s in SNAPSHOTS:
        if f"pred@{s}" not in result:
            continue
        keep = np.ones(len(truth), dtype=bool)
        keep[[index[k] for k in measured[:s]]] = False
        t = truth[keep]
        for which in ("model", "gp"):
            err = np.asarray(result[f"pred@{s}"][which])[keep] - t
            out[f"rmse_unmeasured_{which}@{s}"] = float(np.sqrt(np.mean(err**2)))
            out[f"r2_unmeasured_{which}@{s}"] = float(1.0 - np.sum(err**2) / np.sum((t - t.mean()) ** 2))
    return out


def run_matrix(part: str, args: argparse.Namespace, bar: Any, task: Any) -> pd.DataFrame:
    """Run (or load) every run of a part; write <out>/<part>/results.csv and curves.csv."""
    out = args.out / part
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    rows, curves = [], []
    truths: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = {}
    for condition, name, seed, spec, truth_of, order in matrix_runs(part, args):
        bar.update(task, description=" · ".join(dict.fromkeys([part, condition, name, f"seed {seed}"])))
        path = runs_dir / f"{condition.replace(' ', '_').replace(',', '')}__{name}__seed{seed}.json"
        if path.exists():
            result = json.loads(path.read_text())
        else:
            result = run_one(spec, truth_of, order)
            path.write_text(json.dumps(result))
        key = (condition, order is not None)
        if key not in truths:
            truths[key] = truth_and_ids(spec, truth_of, order)
        truth = truths[key][0]
        values = np.asarray(result["path"]["value"], dtype=float)
        result["curve"] = selection_recall(np.asarray(result["path"]["truth"]), np.isfinite(values), truth, spec.target.goal).tolist()
        reached = np.flatnonzero(np.asarray(result["curve"]) >= 0.5)
        result["n_to_half"] = int(reached[0] + 1) if reached.size else None
        for n in CHECKPOINTS:
            result[f"recall@{n}"] = result["curve"][n - 1] if len(result["curve"]) >= n else None
        row = {"condition": condition, "strategy": name, "seed": seed}
        row |= {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
        for s in SNAPSHOTS:
            snap = result.get(f"map@{s}")
            if snap:
                row |= {f"map_model@{s}": snap["model_kind"], f"rmse_model@{s}": snap["model"]["rmse"],
                        f"r2_model@{s}": snap["model"]["r2"], f"cover2sd_model@{s}": snap["model"]["coverage_2sd"],
                        f"rmse_gp@{s}": snap["gp"]["rmse"], f"r2_gp@{s}": snap["gp"]["r2"]}
        row |= unmeasured_scores(result, *truths[key])
        rows.append(row)
        curves.append(pd.DataFrame({"condition": condition, "strategy": name, "seed": seed,
                                    "measurement": np.arange(1, len(result["curve"]) + 1), "top1pct_recall": result["curve"]}))
        bar.advance(task)
    results = pd.DataFrame(rows)
    results.to_csv(out / "results.csv", index=False)
    pd.concat(curves, ignore_index=True).to_csv(out / "curves.csv", index=False)
    return results


# ------------------------------------------------------------------------------------------------
# decision latency and round trip


def latency_part(args: argparse.Namespace, bar: Any, task: Any) -> pd.DataFrame:
    """Per-step fit + predict + select seconds with 200..300 measured points and 10,000
    candidates, for each of `args.latency_models`, `args.latency_threads` torch thread counts
    and `args.latency_prefilter` acquisition shortlists."""
    import torch

    base = load_spec(TWIN_SPEC).model_dump(mode="json")
    base["name"] = "latency"
    base["instrument"] |= {"size": 100, **NO_DRIFT}
    base["data"] |= {"step": 1}
    base["initial"] = {"n": args.latency_start, "method": "random"}
    base["stop"]["budget"] = args.latency_end
    base["oracle"]["drift_every"] = 0
    rows = []
    for threads, prefilter, kind in itertools.product(args.latency_threads, args.latency_prefilter, args.latency_models):
        torch.set_num_threads(threads)
        bar.update(task, description=f"latency · {kind} · {threads} thread(s) · prefilter {prefilter}")
        spec = base | {"model": LATENCY_MODELS[kind], "acquisition": base["acquisition"] | {"prefilter": prefilter}}
        load = load_average()
        with Campaign.create(None, parse_spec(spec, origin="latency")) as campaign:
            campaign.run(progress=False)
            rounds = campaign.store.rounds()
            n_train = campaign.store.measurements().groupby("round").size().cumsum().shift(1)
            shape = campaign.pool.X.shape
        for r in rounds[rounds["round"] > 0].itertuples():
            rows.append({"model": kind, "threads": threads, "prefilter": prefilter, "round": r.round, "n_train": int(n_train.loc[r.round]),
                         "candidates": shape[0], "features": shape[1], "fit_s": r.fit_s, "predict_s": r.predict_s,
                         "select_s": r.select_s, "decision_s": r.fit_s + r.predict_s + r.select_s,
                         "cold_fit": r.round == 1, "load_before": load})
        bar.advance(task)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "latency.csv", index=False)
    torch.set_num_threads(args.threads)
    return table


def roundtrip_part(args: argparse.Namespace, bar: Any, task: Any) -> dict[str, float]:
    """Median HTTP round trip of a 1,024-point twin spectrum on loopback (200 requests after 20
    warm-up ones; twin latency 0), with the in-process acquire time for comparison."""
    from activescope.instruments.client import RemoteInstrument
    from activescope.instruments.server import ServerThread
    from activescope.instruments.twin import DigitalTwin, TwinOptions

    bar.update(task, description="round trip")
    options = TwinOptions(seed=0, size=128, channels=1024, latency_s=0.0)
    local, served = DigitalTwin(options), DigitalTwin(options)
    trips = []
    with ServerThread(served, "bench-token") as server:
        remote = RemoteInstrument(server.url, "bench-token")
        for _ in range(20):
            remote.acquire(1.0, 1.0)
        for i in range(args.requests):
            t0 = time.perf_counter()
            spectrum = remote.acquire(1.0 + 0.001 * i, 1.0)
            trips.append(time.perf_counter() - t0)
        assert spectrum.values.shape == (1024,)
        remote.close()
    inproc = []
    for i in range(args.requests):
        t0 = time.perf_counter()
        local.acquire(1.0 + 0.001 * i, 1.0)
        inproc.append(time.perf_counter() - t0)
    q = statistics.quantiles(trips, n=20)
    result = {"requests": args.requests, "median_ms": statistics.median(trips) * 1e3, "p5_ms": q[0] * 1e3,
              "p95_ms": q[-1] * 1e3, "inprocess_median_ms": statistics.median(inproc) * 1e3}
    (args.out / "roundtrip.json").write_text(json.dumps(result, indent=1))
    bar.advance(task)
    return result


# ------------------------------------------------------------------------------------------------
# tables


def _ms(runs: pd.DataFrame, column: str, fmt: str) -> str:
    """mean ± sd of a results column over seeds ("–" when absent)."""
    if column not in runs:
        return "–"
    values = pd.to_numeric(runs[column], errors="coerce").dropna()
    if values.empty:
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():{fmt}} ± {sd:{fmt}}"


def _n_to_half(runs: pd.DataFrame, budget: int) -> str:
    """Median measurements to find half the top 1 % (a seed that never does counts as more than
    the budget), the range and how many seeds reached it."""
    values = pd.to_numeric(runs["n_to_half"], errors="coerce")
    reached = values.dropna()
    if reached.empty:
        return f"> {budget} (0/{len(values)})"
    median = np.median(values.fillna(np.inf))
    median_text = f"> {budget}" if np.isinf(median) else f"{median:.0f}"
    high = f">{budget}" if len(reached) < len(values) else f"{reached.max():.0f}"
    return f"{median_text} [{reached.min():.0f}–{high}] ({len(reached)}/{len(values)})"


def strategy_table(results: pd.DataFrame, truth_size: int, budget: int, fidelity: bool = False) -> str:
    """Recall and reconstruction table of one condition (mean ± sd over seeds); `fidelity` adds
    failed measurements and the error of the measured values against the truth at their ids."""
    k = top_fraction_k(truth_size)
    head = [f"measurements to find 50 % of the top 1 % ({k}): median [range] (seeds reaching)",
            "top-1 % recall @100", "@200", "@250", "map model", "map RMSE @100", "R² @100", "RMSE @200", "R² @200",
            "R² @200, unmeasured positions only", "GP-on-points R² @100", "@200"]
    if fidelity:
        head += ["failed", "median abs(y − truth)", "same, last quarter"]
    head += ["median decision s/round"]
    lines = ["| strategy | seeds | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]
    for name, runs in results.groupby("strategy", sort=False):
        decision = pd.to_numeric(runs["median_decision_s"], errors="coerce").dropna()
        cells = [name, str(len(runs)), _n_to_half(runs, budget),
                 *(_ms(runs, f"recall@{n}", ".2f") for n in CHECKPOINTS), str(runs["map_model@100"].iloc[0]),
                 _ms(runs, "rmse_model@100", ".3g"), _ms(runs, "r2_model@100", ".2f"),
                 _ms(runs, "rmse_model@200", ".3g"), _ms(runs, "r2_model@200", ".2f"),
                 _ms(runs, "r2_unmeasured_model@200", ".2f"), _ms(runs, "r2_gp@100", ".2f"), _ms(runs, "r2_gp@200", ".2f")]
        if fidelity:
            cells += [_ms(runs, "n_failed", ".0f"), _ms(runs, "label_error_median", ".3f"),
                      _ms(runs, "label_error_last_quarter", ".3f")]
        cells += [f"{decision.median():.2f}" if not decision.empty else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    expect = " | ".join(f"{n / truth_size:.2f}" for n in CHECKPOINTS)
    lines.append(f"| random (exact expectation) | – | {int(np.ceil(0.5 * truth_size))} (mean) | {expect} |"
                 + " – |" * (len(head) - 4))
    return "\n".join(lines)


DRIFT_METRICS = {  # column, label, format; larger is better unless `lower`
    "recall@100": ("top-1 % recall @100", ".2f", False),
    "recall@250": ("top-1 % recall @250", ".2f", False),
    "r2_model@200": ("map R² @200 (own model)", ".2f", False),
    "label_error_median": ("median abs(y − truth)", ".3f", True),
    "label_error_last_quarter": ("same, last quarter", ".3f", True),
}


def drift_table(results: pd.DataFrame) -> str:
    """Per strategy and drift level: each metric with drift off, uncorrected and corrected, and
    the fraction of the loss the correction recovers, (corrected − uncorrected) / (off −
    uncorrected), on the means over seeds ("no loss" where uncorrected drift is not worse than
    drift off by more than 2 % of the off value); "corrected" is each corrected condition of
    that drift level (with and without selection among the reachable candidates only)."""
    lines = ["| strategy | drift | metric | off | uncorrected | corrected | loss recovered |", "|---|---|---|---|---|---|---|"]
    for name in results["strategy"].unique():
        off = results[(results["condition"] == "drift off") & (results["strategy"] == name)]
        for condition in results["condition"].unique():
            level, _, correction = condition.partition(", corrected")
            unc = results[(results["condition"] == f"{level}, uncorrected") & (results["strategy"] == name)]
            cor = results[(results["condition"] == condition) & (results["strategy"] == name)]
            if not condition.startswith(f"{level}, corrected") or off.empty or unc.empty or cor.empty:
                continue
            level += correction
            for column, (label, fmt, lower) in DRIFT_METRICS.items():
                means = [pd.to_numeric(r[column], errors="coerce").mean() if column in r else np.nan for r in (off, unc, cor)]
                loss = (means[1] - means[0]) if lower else (means[0] - means[1])  # > 0: drift made it worse
                if not np.all(np.isfinite(means)):
                    recovered = "–"
                elif loss <= 0.02 * abs(means[0]):
                    recovered = "no loss"
                else:
                    recovered = f"{(means[2] - means[1]) / (means[0] - means[1]):.0%}"
                lines.append(f"| {name} | {level} | {label} | " + " | ".join(_ms(r, column, fmt) for r in (off, unc, cor))
                             + f" | {recovered} |")
    return "\n".join(lines)


def latency_table(table: pd.DataFrame) -> str:
    lines = [("| model | torch threads | prefilter | timed steps | measured points | candidates × features | median fit s | "
              "median predict s | median select s | **median decision s** | max decision s | cold first fit s | load before |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (kind, threads, prefilter), rows in table.groupby(["model", "threads", "prefilter"], sort=False):
        warm, cold = rows[~rows["cold_fit"]], rows[rows["cold_fit"]]
        lines.append(
            f"| {kind} | {threads} | {prefilter:,} | {len(warm)} | {warm['n_train'].min()}–{warm['n_train'].max()} | "
            f"{rows['candidates'].iloc[0]:,} × {rows['features'].iloc[0]} | {warm['fit_s'].median():.3f} | "
            f"{warm['predict_s'].median():.3f} | {warm['select_s'].median():.3f} | **{warm['decision_s'].median():.3f}** | "
            f"{warm['decision_s'].max():.3f} | {cold['decision_s'].iloc[0]:.2f} | {rows['load_before'].iloc[0]} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# figures


COLORS = {"dkl-ei": "#1f5fa8", "dkl-ucb": "#6a9fd8", "dkl-raw-ei": "#7b4fa8", "dkl-raw-ucb": "#b39ddb",
          "gp-ei": "#c0392b", "gp-ucb": "#e98b7f",
          "random": "#777777", "raster": "#2e8b57", "raster-coarse": "#8fce9f"}


def recall_figure(curves: pd.DataFrame, truth_size: int, budget: int, path: Path) -> None:
    """Fraction of the top 1 % found against measurements: mean per strategy, band = min–max
    over seeds; one panel per condition."""
    from matplotlib.figure import Figure

    conditions = list(dict.fromkeys(curves["condition"]))
    ncols = min(3, len(conditions))
    nrows = -(-len(conditions) // ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(conditions):]:
        ax.set_visible(False)
    n = np.arange(1, budget + 1)
    for ax, condition in zip(axes, conditions, strict=False):
        part = curves[curves["condition"] == condition]
        for name, runs in part.groupby("strategy", sort=False):
            table = runs.pivot(index="measurement", columns="seed", values="top1pct_recall").reindex(n).ffill()
            seeds = table.shape[1]
            ax.plot(n, table.mean(axis=1), color=COLORS.get(name), lw=1.6, label=f"{name} ({seeds} seeds)")
            ax.fill_between(n, table.min(axis=1), table.max(axis=1), color=COLORS.get(name), alpha=0.15, lw=0)
        ax.plot(n, n / truth_size, color="k", lw=0.8, ls="--", label="random (exact expectation)")
        ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.axvline(0.1 * truth_size, color="k", lw=0.6, ls=":")
        ax.set(xlabel="measurements", ylabel=f"fraction of the top 1 % ({top_fraction_k(truth_size)}) found",
               title=condition, xlim=(0, budget), ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def beps_path_figure(beps_dir: Path, seed: int, overview: np.ndarray, truth_map: np.ndarray, path: Path) -> None:
    """Overview the models see, and the measurement paths of DKL + EI and GP + EI (seed `seed`)
    over the true loop-area map (log scale): points coloured by measurement number, the first 60
    joined in order, top-1 % positions circled."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    k = top_fraction_k(truth_map.size)
    threshold = np.sort(truth_map.ravel())[-k]
    top_r, top_c = np.nonzero(truth_map >= threshold)
    fig = Figure(figsize=(15, 4.6))
    axes = fig.subplots(1, 3)
    axes[0].imshow(overview, cmap="gray")
    axes[0].set_title("overview the models see (mean response)")
    for ax, name in zip(axes[1:], ("dkl-ei", "gp-ei"), strict=False):
        run = json.loads((beps_dir / "runs" / f"beps__{name}__seed{seed}.json").read_text())
        p = run["path"]
        image = ax.imshow(truth_map, cmap="viridis", norm=LogNorm(vmin=max(truth_map.min(), 1e-5), vmax=truth_map.max()))
        order = np.arange(len(p["col"]))
        ax.plot(p["col"][:60], p["row"][:60], color="w", lw=0.5, alpha=0.7)  # the first 60 steps as a path
        sc = ax.scatter(p["col"], p["row"], c=order, cmap="autumn", s=9, zorder=3)
        ax.scatter(top_c, top_r, facecolors="none", edgecolors="cyan", s=60, lw=1.0, zorder=4, label=f"top 1 % ({k})")
        found = sum(1 for c, r in zip(p["col"], p["row"], strict=False) if truth_map[r, c] >= threshold)
        ax.set_title(f"{name}, seed {seed}: {len(order)} loops, {found}/{k} of the top 1 %")
        ax.legend(fontsize=7, loc="lower left")
    fig.colorbar(sc, ax=axes[2], fraction=0.046, label="measurement number")
    fig.colorbar(image, ax=axes[1], fraction=0.046, label="true loop area (log scale)")
    for ax in axes:
        ax.set(xlabel="col", ylabel="row")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def beps_map_figure(beps_dir: Path, seed: int, pool_rc: tuple[np.ndarray, np.ndarray], truth_map: np.ndarray, path: Path) -> None:
    """True loop-area map and the reconstructions after 200 measurements (the last snapshot a
    run has; seed `seed`)."""
    from matplotlib.figure import Figure

    rows, cols = pool_rc
    panels = [("truth", truth_map)]
    for name in ("dkl-ei", "gp-ei", "random", "raster-coarse"):
        run = json.loads((beps_dir / "runs" / f"beps__{name}__seed{seed}.json").read_text())
        at = max(s for s in SNAPSHOTS if f"pred@{s}" in run)
        pred = np.asarray(run[f"pred@{at}"]["model"])
        image = np.full(truth_map.shape, np.nan)
        order = coarse_order_rc(rows, cols) if name == "raster-coarse" else np.arange(len(rows))
        image[rows[order], cols[order]] = pred
        snap = run[f"map@{at}"]
        panels.append((f"{name} @{at}: {snap['model_kind']}, R² {snap['model']['r2']:.2f}", image))
    fig = Figure(figsize=(4 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels))
    vmax = np.percentile(truth_map, 99.5)
    for ax, (title, image) in zip(axes, panels, strict=False):
        ax.imshow(image, vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    import torch

    return (f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, torch {torch.__version__}, "
            f"torch threads {torch.get_num_threads()}")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--parts", nargs="+", default=["beps", "twin", "latency", "roundtrip"],
                        choices=["beps", "twin", "latency", "roundtrip"])
    parser.add_argument("--strategies", nargs="+", help="run only these strategies (default all)")
    parser.add_argument("--conditions", nargs="+", help="twin: run only these conditions (default all)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per strategy (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--budget", type=int, default=300, help="measurements per campaign (default 300)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/microscope"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the campaigns (default 1)")
    parser.add_argument("--latency-threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts for the latency part (default 1 2)")
    parser.add_argument("--latency-models", nargs="+", default=list(LATENCY_MODELS), choices=list(LATENCY_MODELS),
                        help="models for the latency part (default all)")
    parser.add_argument("--latency-prefilter", type=int, nargs="+", default=[2000, 500],
                        help="acquisition prefilter values for the latency part (default 2000 500)")
    parser.add_argument("--latency-start", type=int, default=200, help="measured points before the timed steps")
    parser.add_argument("--latency-end", type=int, default=300, help="measured points after the timed steps")
    parser.add_argument("--requests", type=int, default=200, help="timed round trips (default 200)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 seed, budget 120, latency from 100 to 140 points, 50 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.requests = 1, 120, 50
        args.latency_start, args.latency_end = 100, 140
    import torch
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    header = [f"# Autonomous-microscope benchmarks ({started:%Y-%m-%d %H:%M} UTC)", "",
              f"Command: `python benchmarks/microscope_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
              f"Machine: {machine()}; load average at start {load_average()}.", ""]
    sections: list[str] = []
    total = sum(len(matrix_runs(p, args)) for p in ("beps", "twin") if p in args.parts)
    total += len(args.latency_models) * len(args.latency_threads) * len(args.latency_prefilter) * ("latency" in args.parts) + ("roundtrip" in args.parts)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("microscope benchmarks", total=total)
        if "roundtrip" in args.parts:  # first: it is the most sensitive to load
            rt = roundtrip_part(args, bar, task)
            sections.append(f"## Server round trip (load {load_average()})\n\n1,024-point twin spectrum over HTTP on loopback, "
                            f"{rt['requests']} requests: median **{rt['median_ms']:.2f} ms** (p5 {rt['p5_ms']:.2f}, p95 {rt['p95_ms']:.2f}); "
                            f"in-process acquire {rt['inprocess_median_ms']:.3f} ms.\n")
        if "latency" in args.parts:
            lat = latency_part(args, bar, task)
            sections.append(f"## Decision latency (load after {load_average()})\n\n" + latency_table(lat) + "\n")
        for part in ("beps", "twin"):
            if part not in args.parts:
                continue
            t0 = time.perf_counter()
            results = run_matrix(part, args, bar, task)
            curves = pd.read_csv(args.out / part / "curves.csv")
            truth_size = int(results["pool_size"].iloc[0])
            text = [f"## {'BEPS playback' if part == 'beps' else 'Digital twin'} ({time.perf_counter() - t0:.0f} s, load {load_average()})", ""]
            for condition, runs in results.groupby("condition", sort=False):
                residual = pd.to_numeric(runs["drift_residual_nm"], errors="coerce")
                drift = (f", drift at the end {runs['drift_nm'].mean():.3f} nm"
                         + (f", error of the correction's drift estimate at the end {residual.mean():.4f} nm"
                            if residual.notna().any() else "")) if part == "twin" else ""
                text += ([f"### {condition}", ""] if part == "twin" else []) + [
                    f"Mean instrument time {runs['instrument_s'].mean():.0f} s{drift}; failed measurements "
                    f"{runs['n_failed'].sum()} in {len(runs)} runs; no id measured twice: {bool(runs['unique_ids'].all())}.", ""]
                text += [strategy_table(runs, truth_size, args.budget, fidelity=part == "twin"), ""]
            if part == "twin":
                text += ["### What drift costs and what the correction recovers", "", drift_table(results), ""]
            sections.append("\n".join(text))
            recall_figure(curves, truth_size, args.budget, args.out / f"{part}_recall.png")
            if part == "beps":
                _beps_figures(args)
    (args.out / "results.md").write_text("\n".join(header + sections), encoding="utf-8")
    print("\n".join(header + sections))
    print(f"wall time {(datetime.now(UTC) - started).total_seconds():.0f} s; load average now {load_average()}")
    print(f"written to {args.out.resolve()}")
    return 0


def _beps_figures(args: argparse.Namespace) -> None:
    from activescope.instruments.playback import beps_playback, loop_area_map

    instrument = beps_playback(ROOT / "data" / "beps_pto_50x50.h5", overview="mean")
    truth_map = loop_area_map(instrument.cube, instrument.axis)
    seed = args.first_seed
    beps_path_figure(args.out / "beps", seed, instrument.overview().image, truth_map, args.out / "beps_paths.png")
    rows, cols = np.mgrid[0:50, 0:50]
    beps_map_figure(args.out / "beps", seed, (rows.ravel(), cols.ravel()), truth_map, args.out / "beps_maps.png")


if __name__ == "__main__":
    sys.exit(main())
