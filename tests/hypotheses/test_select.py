"""The selecting surrogate on the campaign engine: known-truth hypothesis learning, records in
the run store, resume, the log-likelihood reward, and the report's section."""

from __future__ import annotations

import numpy as np
import pytest

from activescope.engine.campaign import Campaign
from activescope.engine.errors import SpecError
from activescope.engine.select import SelectSurrogate
from activescope.hypotheses.synthetic import (
    learning_spec,
    phase_transition_problem,
    run_hypothesis_learning,
)


def _small(dims: int, seed: int):
    problem = phase_transition_problem(dims, seed, n=120)
    for section in problem.hypotheses.values():
        section |= {"fit_iters": 40, "warm_iters": 10}
    return problem


@pytest.mark.parametrize("seed", [0, 1])
def test_true_phase_transition_law_wins_hypothesis_learning(seed):
    problem = _small(1, seed)
    winner, average = run_hypothesis_learning(problem, seed, steps=10, initial=6, warmup=3)
    assert winner == problem.truth, average


def test_rounds_record_choices_and_a_resumed_run_continues_the_bandit(tmp_path):
    problem = _small(1, 3)
    spec = learning_spec(problem, seed=3, steps=6, initial=6, warmup=2)
    spec["stop"]["max_rounds"] = 3
    run_dir = tmp_path / "run"
    with Campaign.create(run_dir, spec, pool=problem.pool) as campaign:
        campaign.run(progress=False)
        before = campaign.store.rounds()["record"].dropna().tolist()
    assert [r["fit"] for r in before] == [1, 2, 3]
    assert [r["phase"] for r in before] == ["warmup", "warmup", "select"]
    assert set(before[0]["median_std"]) == set(problem.hypotheses)  # warm-up scores every candidate
    assert sum(before[-1]["counts"].values()) == 3 and before[-1]["posteriors"]["transition"]["t"]["mean"] > 0
    spec["stop"]["max_rounds"] = None
    from activescope.engine.store import Store

    with Store.open(run_dir, lock=True) as store:  # the operator lifts the round limit (same spec otherwise)
        store._conn.execute("UPDATE meta SET value = ? WHERE key = 'spec'", (Campaign.create(None, spec, pool=problem.pool).spec.to_yaml(),))
    with Campaign.open(run_dir, pool=problem.pool) as campaign:
        assert campaign._surrogate.n_fits == 3 and campaign._surrogate.counts.sum() == 3  # bandit state restored
        campaign.run(progress=False)
        after = campaign.store.rounds()["record"].dropna().tolist()
    assert [r["fit"] for r in after] == list(range(1, 7))
    assert sum(after[-1]["counts"].values()) == 6


def test_log_likelihood_reward_scores_new_points_under_the_previous_fits():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 3, size=(30, 1))
    y = 1.5 * X[:, 0] ** 2 - 2.0 + 0.05 * rng.normal(size=30)
    law = {"kind": "hypothesis", "descriptors": ["x"], "fit_iters": 40}
    select = SelectSurrogate(
        candidates={"true": law | {"law": "a * x**2 + b", "priors": {"a": "Normal(0, 2)", "b": "Normal(0, 5)"}},
                    "linear": law | {"law": "a * x + b", "priors": {"a": "Normal(0, 2)", "b": "Normal(0, 5)"}}},
        reward="log_likelihood", warmup=2)  # fmt: skip
    select.fit(X[:24], y[:24])
    expected = {}
    for name, model in select.models.items():  # what each fit predicts for the 6 points measured next
        mean, variance = model.predict(X[24:])
        variance = variance + model.hyperparameters()["noise"]
        expected[name] = float(np.mean(-0.5 * (np.log(2 * np.pi * variance) + (y[24:] - mean) ** 2 / variance)))
    select.fit(X, y)
    record = select.round_record()
    assert record["log_likelihood"] == pytest.approx(expected)
    assert record["rewards"] == pytest.approx(expected)  # in warm-up every candidate is rewarded
    assert record["choice"] == "true" and expected["true"] > expected["linear"]


def test_selecting_needs_two_valid_candidates():
    with pytest.raises(SpecError, match="at least two"):
        SelectSurrogate(candidates={"only": {"kind": "gp"}})
    with pytest.raises(SpecError, match="candidates.bad"):
        SelectSurrogate(candidates={"ok": {"kind": "gp"}, "bad": {"kind": "gp", "kernel": "nope"}})


def test_report_section_draws_rewards_and_tabulates_posteriors(tmp_path):
    from activescope.report import selection

    problem = phase_transition_problem(1, 5, n=60)
    with Campaign.create(None, learning_spec(problem, seed=5, steps=3, initial=6, warmup=1), pool=problem.pool) as campaign:
        campaign.run(progress=False)
        rounds = campaign.store.rounds()
    saved = {}

    def save(name, fig, caption):
        saved[name] = fig
        return f"<figure>{caption}</figure>"

    html = selection.section(rounds, save)
    left, right = saved["selection"].axes
    assert [len(line.get_xdata()) for line in left.get_lines()] == [3, 3, 3]  # one curve per hypothesis, one point per fit
    assert len(right.collections[0].get_offsets()) == 3
    for name in ("transition", "quadratic", "saturating"):  # every candidate's posterior is tabulated
        assert f"<td>{name}</td>" in html
    assert selection.section(rounds.assign(record=None), save) == ""


@pytest.mark.parametrize(("policy", "expected"), [("softmax", np.exp(2) / (np.exp(2) + 1)), ("epsilon_greedy", 0.6 + 0.4 / 2)])
def test_policies_choose_the_better_candidate_at_their_stated_rate(policy, expected):
    select = SelectSurrogate(candidates={"good": {"kind": "gp"}, "poor": {"kind": "gp"}}, policy=policy, epsilon=0.4, temperature=0.5)
    select.average[:] = [1.0, 0.0]
    rng = np.random.default_rng(0)
    picks = np.array([select._choose(rng) for _ in range(4000)])
    assert np.mean(picks == 0) == pytest.approx(expected, abs=0.025)
