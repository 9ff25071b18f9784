"""Training an ensemble of atom finders on simulated frames.

Members share one architecture and differ in initial weights and batch order (trained from
scratch) or only in batch order after a common baseline (short fine-tunes): the first is more
diverse, the second much cheaper.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch

from activescope.engine.errors import SpecError
from activescope.microscopy.ensemble.finder import Ensemble
from activescope.microscopy.nets.checkpoint import ModelCard
from activescope.microscopy.nets.unet import UNet
from activescope.microscopy.sim.simulate import SimConfig, lattice_classes
from activescope.microscopy.training.trainer import (
    ProgressCallback,
    SimulatedFrames,
    TrainConfig,
    TrainedModel,
    Trainer,
    TrainHistory,
    ValidationSet,
    train_on_simulation,
)


@dataclass
class TrainedEnsemble:
    """Trained members with their card and histories."""

    members: list[UNet]
    card: ModelCard
    histories: list[TrainHistory]


def train_ensemble(sim: SimConfig, config: TrainConfig, n_members: int,
                   architecture: str = "lite_unet", architecture_kwargs: dict | None = None,
                   mode: str = "scratch", finetune_steps: int = 100,
                   baseline: TrainedModel | None = None, val_frames: int = 0,
                   device: str | torch.device | None = None,
                   progress: bool = False,
                   callback: ProgressCallback | None = None) -> TrainedEnsemble:
    """Train ``n_members`` networks on simulated frames.

    ``mode="scratch"``: member ``k`` uses weight seed and batch seed ``config.seed + k``.
    ``mode="finetune"``: one baseline (given, or trained with ``config``) is copied and each copy
    is fine-tuned for ``finetune_steps`` steps at a tenth of the learning rate with its own
    batch order - much cheaper, less diverse.
    ``callback(step, total, loss)`` counts steps over all members (and the baseline).
    """
    if n_members < 2:
        raise SpecError(f"an ensemble needs at least 2 members, got {n_members}")
    if mode not in ("scratch", "finetune"):
        raise SpecError(f"ensemble mode must be 'scratch' or 'finetune', got {mode!r}")
    kwargs = dict(architecture_kwargs or {})
    classes = lattice_classes(sim.lattice)
    members, histories = [], []
    own_baseline = mode == "finetune" and baseline is None
    total = (n_members * config.steps if mode == "scratch"
             else n_members * finetune_steps + (config.steps if own_baseline else 0))
    done = [0]

    def counted(step: int, steps: int, loss: float) -> None:
        if callback is not None:
            callback(done[0] + step, total, loss)
            if step == steps:
                done[0] += steps

    if mode == "scratch":
        for k in range(n_members):
            trained = train_on_simulation(sim, replace(config, seed=config.seed + k, batch_seed=None),
                                          architecture, kwargs, val_frames=0, device=device,
                                          callback=counted)
            members.append(trained.model)
            histories.append(trained.history)
        card = trained.card
    else:
        base = baseline or train_on_simulation(sim, config, architecture, kwargs, val_frames=0,
                                               device=device, callback=counted)
        tune = replace(config, steps=finetune_steps, learning_rate=config.learning_rate / 10)
        for k in range(n_members):
            member = copy.deepcopy(base.model)
            trainer = Trainer(member, SimulatedFrames(sim, config.crop_size),
                              replace(tune, batch_seed=config.seed + 1000 + k), device)
            histories.append(trainer.fit(callback=counted))
            members.append(trainer.model)
        card = base.card
    card = replace(card, training={**card.training, "ensemble_mode": mode,
                                   "finetune_steps": finetune_steps if mode == "finetune" else 0})
    if val_frames > 0:
        validation = ValidationSet.simulated(sim, val_frames, seed=20_000 + config.seed)
        card.training["ensemble_val_f1"] = validation.score(
            Ensemble(members, classes, device).find(validation.images)).f1
    return TrainedEnsemble(members, card, histories)

