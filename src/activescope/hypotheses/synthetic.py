"""Known-truth checks for hypothesis learning: a phase-transition law and smooth look-alikes.

`phase_transition_problem(dims, seed)` returns a candidate pool whose labels follow a piecewise
law (a kink at a transition point, as at a phase transition) plus Gaussian noise, and the
competing hypotheses, the true one first. `run_hypothesis_learning` runs the selecting campaign
and returns which hypothesis ended with the highest average reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..engine.campaign import Campaign
from ..engine.pool import Pool

NOISE_SD = 0.05
"""Observation noise of the synthetic labels (label units)."""


@dataclass(frozen=True)
class Problem:
    """A pool with labels in column `y` and named competing hypotheses (model sections)."""

    pool: Pool
    hypotheses: dict[str, dict[str, Any]]
    truth: str


def _law(law: str, priors: dict[str, str], descriptors: list[str], law_uncertainty: bool) -> dict[str, Any]:
    return {"kind": "hypothesis", "law": law, "priors": priors, "descriptors": descriptors,
            "fit_iters": 60, "warm_iters": 20, "lr": 0.1, "law_uncertainty": law_uncertainty}  # fmt: skip


def phase_transition_problem(dims: int = 1, seed: int = 0, n: int = 300, law_uncertainty: bool = False) -> Problem:
    """Pool of n points on [0, 10]^dims; y = a*x0 below the transition t = 6, then a plateau
    (plus b*x1 in 2-D), with noise NOISE_SD. Look-alikes: a quadratic and a saturating sqrt law.
    `law_uncertainty` adds each law's parameter uncertainty to its predictive variances
    (`HypothesisSurrogate`'s linearised Laplace option)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, size=(n, dims))
    y = np.where(x[:, 0] < 6.0, 0.5 * x[:, 0], 3.0)
    names = ["x0", "x1"][:dims]
    extra = " + b * x1" if dims == 2 else ""
    extra_prior = {"b": "Normal(0, 1)"} if dims == 2 else {}
    if dims == 2:
        y = y + 0.3 * x[:, 1]
    y = y + NOISE_SD * rng.normal(size=n)
    frame = pd.DataFrame(x, columns=names).assign(y=y)
    pool = Pool.from_frame(frame, features=names, labels=["y"])
    laws = {
        "transition": (f"a * minimum(x0, t){extra}", {"a": "Normal(0, 1)", "t": "Uniform(0, 10)"}),
        "quadratic": (f"c + a * x0 + q * x0**2{extra}", {"c": "Normal(0, 2)", "a": "Normal(0, 1)", "q": "Normal(0, 0.2)"}),
        "saturating": (f"a * sqrt(x0){extra}", {"a": "Normal(0, 2)"}),
    }  # fmt: skip
    hypotheses = {name: _law(law, priors | extra_prior, names, law_uncertainty) for name, (law, priors) in laws.items()}
    return Problem(pool, hypotheses, "transition")


def learning_spec(problem: Problem, seed: int, steps: int = 20, initial: int = 8, warmup: int = 5,
                  reward: str = "uncertainty") -> dict[str, Any]:  # fmt: skip
    """A campaign spec mapping: `initial` random points, then `steps` single-point rounds chosen
    by maximum variance of the hypothesis selected by epsilon-greedy (epsilon 0.4)."""
    return {
        "name": "hypothesis-learning",
        "seed": seed,
        "target": {"column": "y", "goal": "maximize"},
        "model": {"kind": "select", "candidates": problem.hypotheses, "policy": "epsilon_greedy",
                  "epsilon": 0.4, "warmup": warmup, "reward": reward},  # fmt: skip
        "acquisition": {"kind": "max_variance", "q": 1},
        "initial": {"n": initial, "method": "random"},
        "stop": {"budget": initial + steps},
    }


def run_hypothesis_learning(problem: Problem, seed: int, **spec_options: Any) -> tuple[str, dict[str, float]]:
    """Run the campaign in memory; returns (winning hypothesis, final average reward per
    hypothesis). The winner has the highest final average reward."""
    with Campaign.create(None, learning_spec(problem, seed, **spec_options), pool=problem.pool) as campaign:
        campaign.run(progress=False)
        record = campaign.store.rounds()["record"].dropna().iloc[-1]
    average = record["average_reward"]
    return max(average, key=average.get), average
