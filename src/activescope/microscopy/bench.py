"""Atom-finding benchmarks behind ``activescope bench atoms``.

Four parts, all on simulated frames with known atoms: in-distribution F1 per lattice and
versus dose (+ a PNG curve), time to reach validation F1 >= 0.98, out-of-distribution sets
(single model vs ensemble vs ensemble after ELIT, and the AUROC of per-atom uncertainty for
telling wrong detections from right ones), and throughput at 512 x 512 with atom finding
included. Every accuracy row gives position F1 (classes ignored) and class-aware F1, and a
per-class table gives precision/recall/F1 of each atom class. Results go to ``results.md``
(and ``results.json``) in the output folder.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from activescope.microscopy.ensemble.elit import iterate
from activescope.microscopy.ensemble.finder import Ensemble
from activescope.microscopy.ensemble.train import train_ensemble
from activescope.microscopy.find.predict import Predictor
from activescope.microscopy.nets.unet import build_network
from activescope.microscopy.sim.simulate import (
    SimConfig,
    lattice_classes,
    simulate_batch,
)
from activescope.microscopy.training.trainer import (
    TrainConfig,
    ValidationSet,
    train_on_simulation,
)

OOD_SETS: dict[str, dict] = {
    "wide probe": {"probe_fwhm": (1.4, 1.6)},
    "low dose + read noise": {"dose": (300.0, 600.0), "read_noise": (0.15, 0.25)},
    "scan distortion": {"jitter": (0.8, 1.2), "drift": (6.0, 10.0)},
    "strain 8%": {"strain": 0.08},
    "defects 10%": {"vacancy_prob": 0.10, "dopant_prob": 0.05},
}
DOSES = (3e2, 1e3, 3e3, 1e4, 3e4)


@dataclass
class BenchSettings:
    """Sizes of one benchmark run (``quick`` shrinks everything to CI size)."""

    lattices: tuple[str, ...]
    steps: int
    n_members: int
    elit_rounds: int
    elit_steps: int
    eval_frames: int
    speed_repeats: int
    frame_size: int = 256
    speed_members: int = 10

    @classmethod
    def make(cls, quick: bool) -> "BenchSettings":
        if quick:
            return cls(("graphene",), 150, 3, 1, 20, 2, 2, frame_size=128, speed_members=3)
        return cls(("graphene", "mos2", "srtio3"), 500, 5, 1, 40, 6, 5)


def median_fps(run: Callable[[], object], n_frames: int, repeats: int) -> float:
    """Frames per second: median over ``repeats`` timed calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return n_frames / float(np.median(times))


def bench_speed(settings: BenchSettings, trained_model, trained_members,
                threads: int) -> list[dict]:
    """Frames/s at 512 x 512 including atom finding: the AtomAI-style re-implementation (our
    16-filter ``unet``, not AtomAI itself), our light
    U-Net (with and without folded batch norm) and the ensemble's backends (members one by one,
    one fused grouped-convolution network, ``torch.func.vmap``) and its member lookup.

    The ensemble is ``settings.speed_members`` copies of the trained members (speed does not
    depend on the weights)."""
    torch.set_num_threads(threads)
    images = simulate_batch(SimConfig(size=512), 2, seed=99)[0]
    classes = trained_model.card.classes
    trained_members = [trained_members[k % len(trained_members)]
                       for k in range(settings.speed_members)]
    rows = []
    torch.manual_seed(0)
    baseline = build_network("unet", n_classes=len(classes), base_filters=16).eval()
    variants = [("AtomAI-style re-implementation (unet, 16 filters)",
                 Predictor(baseline, classes, "cpu", species="network")),
                ("lite_unet", Predictor(trained_model.model, classes, "cpu", species="network"))]
    unfused = Predictor(trained_model.model, classes, "cpu", species="network")
    unfused.model = trained_model.model.eval().to(memory_format=torch.contiguous_format)
    variants.append(("lite_unet, no batch-norm folding (channels-last input only)", unfused))
    for name, predictor in variants:
        rows.append({"model": name, "frames_per_s": median_fps(
            lambda: predictor.find(images), len(images), settings.speed_repeats)})
    network_only = Predictor(trained_model.model, classes, "cpu")
    rows.append({"model": "lite_unet, network only (no atom finding)", "frames_per_s": median_fps(
        lambda: network_only.probabilities(images), len(images), settings.speed_repeats)})
    n = len(trained_members)
    for backend in ("loop", "fused", "vmap"):
        ensemble = Ensemble(trained_members, classes, "cpu", backend=backend)
        rows.append({"model": f"ensemble of {n}, {backend} (+ per-atom uncertainty)",
                     "frames_per_s": median_fps(partial(ensemble.find, images), len(images),
                                                 settings.speed_repeats)})
        rows.append({"model": f"ensemble of {n}, {backend} (maps only)",
                     "frames_per_s": median_fps(partial(ensemble.probabilities, images),
                                                 len(images), settings.speed_repeats)})
    lookup = Ensemble(trained_members, classes, "cpu", backend="loop", member_lookup=True)
    rows.append({"model": f"ensemble of {n}, loop, member lookup (+ per-atom uncertainty)",
                 "frames_per_s": median_fps(lambda: lookup.find(images), len(images),
                                             settings.speed_repeats)})
    return [{"threads": threads, **row} for row in rows]


def _uncertainty_aurocs(validation: ValidationSet, atoms) -> dict[str, float]:
    """AUROC for separating wrong consensus atoms from right ones, for two per-atom scores:
    the ensemble ``uncertainty`` column and 1 - ``score`` (the consensus peak probability)."""
    result = validation.score(atoms)
    wrong = ~result.pred_correct
    if wrong.all() or not wrong.any():
        return {"auroc_uncertainty": float("nan"), "auroc_1_minus_score": float("nan")}
    order = np.concatenate([np.flatnonzero(atoms["frame"].to_numpy() == k)
                            for k in range(len(validation.atoms))])
    ordered = atoms.iloc[order]
    return {"auroc_uncertainty": float(roc_auc_score(wrong, ordered["uncertainty"].to_numpy())),
            "auroc_1_minus_score": float(roc_auc_score(wrong, 1.0 - ordered["score"].to_numpy()))}


def _per_class_rows(label: dict, result, classes: list[str]) -> list[dict]:
    """One row per atom class: precision, recall, F1, true and found counts."""
    table = result.per_class(classes)
    return [{**label, "class": name, "precision": float(row["precision"]),
             "recall": float(row["recall"]), "f1": float(row["f1"]), "n_true": int(row["n_true"]),
             "n_found": int(row["n_pred"])} for name, row in table.iterrows()]


def bench_ood(settings: BenchSettings, base_sim: SimConfig, model, members,
              per_class: list[dict] | None = None) -> list[dict]:
    """Single model vs ensemble vs ensemble + ELIT on each out-of-distribution set.

    Per-class rows of every finder on every set are appended to ``per_class`` when given."""
    classes = model.card.classes
    n_classes = len(classes)
    rows = []
    for index, (name, change) in enumerate(OOD_SETS.items()):
        sim = replace(base_sim, size=settings.frame_size, **change)
        test = ValidationSet.simulated(sim, settings.eval_frames, seed=500 + index)
        unlabelled = simulate_batch(sim, settings.eval_frames, seed=900 + index)[0]
        single_result = test.result(Predictor(model.model, classes, "cpu"))
        single = single_result.f1
        ensemble = Ensemble(members, classes, "cpu")
        atoms = ensemble.find(test.images)
        ensemble_result = test.score(atoms, n_classes)
        ensemble_f1 = ensemble_result.f1
        aurocs = _uncertainty_aurocs(test, atoms)
        tuned = iterate([copy.deepcopy(m) for m in members], classes, unlabelled,
                        settings.elit_rounds, TrainConfig(steps=settings.elit_steps, batch_size=8,
                                                          crop_size=min(128, settings.frame_size),
                                                          learning_rate=3e-4),
                        sim=replace(base_sim, size=settings.frame_size), device="cpu",
                        progress=False)
        elit_result = test.score(Ensemble(tuned.members, classes, "cpu").find(test.images),
                                 n_classes)
        elit_f1 = elit_result.f1
        rows.append({"ood_set": name, "single_f1": single, "ensemble_f1": ensemble_f1,
                     "elit_f1": elit_f1, "elit_gain_vs_single": elit_f1 - single,
                     "single_class_f1": single_result.class_aware_f1,
                     "ensemble_class_f1": ensemble_result.class_aware_f1,
                     "elit_class_f1": elit_result.class_aware_f1, **aurocs})
        if per_class is not None:
            for finder, result in (("single", single_result), ("ensemble", ensemble_result),
                                   ("ensemble+ELIT", elit_result)):
                per_class.extend(_per_class_rows({"set": f"OOD {name}", "finder": finder},
                                                 result, classes))
    return rows


def bench_in_distribution(settings: BenchSettings, config: TrainConfig,
                          per_class: list[dict] | None = None) -> tuple[list[dict], dict]:
    """F1 per lattice at moderate dose (5e3 e/Å²) and the time to validation F1 >= 0.98.

    Per-class rows of every lattice are appended to ``per_class`` when given."""
    rows, models = [], {}
    for lattice in settings.lattices:
        sim = SimConfig(lattice=lattice)
        trained = train_on_simulation(sim, config, val_frames=4, val_every=50, target_f1=0.98,
                                      device="cpu", progress=False)
        models[lattice] = trained
        test = ValidationSet.simulated(replace(sim, size=settings.frame_size, dose=5e3),
                                       settings.eval_frames, seed=300)
        classes = lattice_classes(lattice)
        result = test.result(Predictor(trained.model, classes, "cpu"))
        rows.append({"lattice": lattice, "f1_dose_5e3": result.f1,
                     "class_f1_dose_5e3": result.class_aware_f1,
                     "train_steps": len(trained.history.loss), "train_s": trained.history.seconds,
                     "s_to_val_f1_0.98": trained.history.seconds_to_target})
        if per_class is not None:
            per_class.extend(_per_class_rows({"set": f"{lattice}, dose 5e3", "finder": "single"},
                                             result, classes))
    return rows, models


def bench_dose_curve(settings: BenchSettings, trained, out: Path) -> list[dict]:
    """F1 versus dose for the first lattice's model; writes ``f1_vs_dose.png``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    lattice = settings.lattices[0]
    predictor = Predictor(trained.model, lattice_classes(lattice), "cpu")
    rows = []
    for dose in DOSES:
        test = ValidationSet.simulated(SimConfig(lattice=lattice, size=settings.frame_size,
                                                 dose=dose), settings.eval_frames, seed=400)
        result = test.result(predictor)
        rows.append({"dose_e_per_A2": dose, "f1": result.f1,
                     "class_aware_f1": result.class_aware_f1})
    figure, axes = plt.subplots(figsize=(4.5, 3.2), constrained_layout=True)
    axes.semilogx([r["dose_e_per_A2"] for r in rows], [r["f1"] for r in rows], "o-")
    axes.set(xlabel="dose (e/Å²)", ylabel="atom F1", title=f"{lattice}: F1 vs dose")
    figure.savefig(out / "f1_vs_dose.png", dpi=150)
    plt.close(figure)
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_benchmarks(out: Path, quick: bool = False, threads: int = 1) -> str:
    """Run every atom-finding benchmark; returns the markdown written to ``out/results.md``.

    Training and accuracy parts use ``threads`` torch threads; speed is measured with 1 and 2.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    settings = BenchSettings.make(quick)
    config = TrainConfig(steps=settings.steps, batch_size=8, crop_size=64 if quick else 128)
    started = time.perf_counter()
    per_class: list[dict] = []
    in_dist, models = bench_in_distribution(settings, config, per_class)
    base = models[settings.lattices[0]]
    dose_rows = bench_dose_curve(settings, base, out)
    base_sim = SimConfig(lattice=settings.lattices[0])
    ensemble = train_ensemble(base_sim, config, settings.n_members, mode="scratch",
                              device="cpu", progress=False)
    ood_rows = bench_ood(settings, base_sim, base, ensemble.members, per_class)
    speed_rows = [row for n in (1, 2) for row in bench_speed(settings, base, ensemble.members, n)]
    torch.set_num_threads(threads)
    sections = {
        "In-distribution F1 (moderate dose) and training time": in_dist,
        "F1 vs dose": dose_rows,
        f"Out of distribution ({settings.n_members}-member ensemble, ELIT "
        f"{settings.elit_rounds} rounds)": ood_rows,
        "Per-class precision / recall / F1 (class-aware matching)": per_class,
        "Speed at 512x512 (frames/s, atom finding included unless noted)": speed_rows,
    }
    text = "\n\n".join(f"### {title}\n\n{_table(rows)}" for title, rows in sections.items())
    text = (f"## Atom-finding benchmarks ({'quick' if quick else 'full'}, "
            f"{threads} training thread(s), {time.perf_counter() - started:.0f} s)\n\n" + text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(sections, indent=1, default=str))
    return text
