"""The active-learning loop: initial design, then rounds of fit → score → select → measure → record.

Each round is written in two transactions: the selected batch as `pending` before measuring,
then its measurements and the round's completion. Resuming re-uses a pending batch and measures
only its unmeasured ids, so a run killed at any point loses and repeats nothing. Randomness is
seeded per round from (spec.seed, round), and a warm-starting surrogate's state (`get_state`) is
stored with every round and restored on resume, so a resumed run selects exactly what an
uninterrupted one would. Minimisation negates y for the model and acquisition; the store always
holds true values.

Two ways to drive a campaign: `run()` measures through the spec's oracle until a stop rule holds;
`ask()` / `tell()` hand each batch to the caller (a notebook, a lab) and take its results.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .acquisition import build_acquisition, random_pick, select_batch
from .assemble import as_spec, build_instrument, build_pool_for, build_surrogate
from .errors import DataError, RunStateError, SpecError
from .oracle import Measurement, Oracle, build_oracle, measure_with_retries
from .pool import Pool
from .results import check_told, read_results_csv
from .scalarizers import build_scalarizer
from .spec import AcquisitionSpec, CampaignSpec
from .steering import instructions_for_round
from .store import Store
from .surrogate import Surrogate

BATCH_COLUMNS = ("mean", "std", "acquisition")
"""Columns `ask()` adds after the id and info columns: posterior mean and standard deviation
(target units) and the acquisition score of each suggested candidate."""
DIVERSE_SAMPLE = 5000  # candidates the diverse initial design spreads its points over


@dataclass
class CampaignSummary:
    """Where a campaign stands. Values are in target units; times in seconds."""

    run_dir: Path | None  # None for a campaign kept in memory
    name: str
    target: str
    goal: str
    rounds: int
    n_measured: int
    n_failed: int
    budget: int
    best: pd.DataFrame = field(repr=False)  # top measured candidates: id, value, round (+ info columns)
    top1pct_recall: float | None
    top100_recall: float | None
    elapsed_s: float
    stop_reason: str | None  # None while the campaign can go on
    paused: bool = False  # an operator asked the campaign to stop after the current round

    @property
    def best_value(self) -> float | None:
        """The best measured value (target units), or None before any success."""
        return None if self.best.empty else float(self.best["value"].iloc[0])


def _seed_torch(seed: int) -> None:
    """Seed torch when a model uses it (the engine itself never imports torch)."""
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def initial_design(X: np.ndarray, candidates: np.ndarray, n: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """Pick n rows among `candidates` (row positions): `random` draws uniformly; `diverse` runs
    greedy max-min (farthest point) selection over a random sample of ≤ DIVERSE_SAMPLE rows."""
    if method == "random" or n >= len(candidates):
        return rng.choice(candidates, size=min(n, len(candidates)), replace=False)
    sample = rng.choice(candidates, size=min(DIVERSE_SAMPLE, len(candidates)), replace=False)
    points = X[sample].astype(np.float64)
    chosen = [int(rng.integers(len(sample)))]
    nearest = np.sum((points - points[chosen[0]]) ** 2, axis=1)
    for _ in range(n - 1):
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.sum((points - points[chosen[-1]]) ** 2, axis=1))
    return sample[chosen]


class Campaign:
    """One campaign bound to its run record. Build it with `create` (a new run directory, or in
    memory when run_dir is None), `open` (resume) or `create_or_open`, not directly; close it (or
    use it in a `with` block) to release the run's lock.

    Example (in memory, the caller measures)::

        campaign = Campaign.create(None, spec, pool=Pool.from_frame(df, features=["x1", "x2"]))
        while not campaign.done:
            batch = campaign.ask()
            campaign.tell(batch["id"], measure(batch))
    """

    def __init__(
        self,
        store: Store,
        spec: CampaignSpec,
        pool: Pool,
        oracle: Oracle,
        surrogate: Surrogate | None,
        instrument: Any = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.pool = pool
        self.oracle = oracle
        self.instrument = instrument
        self._surrogate = surrogate
        self.model: Surrogate | None = None  # the surrogate once fitted (kept across rounds: models may warm-start)
        scalarizer = spec.oracle.scalarizer
        self._scalarize = build_scalarizer(scalarizer.kind, scalarizer.options()) if scalarizer else None
        if hasattr(oracle, "bind_run"):
            oracle.bind_run(store.run_id)
        self._sign = 1.0 if spec.target.goal == "maximize" else -1.0

    @staticmethod
    def _components(spec: CampaignSpec, pool: Pool | None) -> tuple[Pool, Oracle, Surrogate | None, Any]:
        """Build the spec's instrument, pool (unless given), oracle and (unless the acquisition
        needs none) surrogate, checking the spec against the pool."""
        instrument = build_instrument(spec)
        pool = build_pool_for(spec, instrument) if pool is None else pool
        if spec.stop.budget > len(pool):
            raise SpecError(f"stop.budget ({spec.stop.budget}) is larger than the pool ({len(pool)} candidates)")
        oracle = build_oracle(spec.oracle.kind, spec.oracle.options(), pool, spec.target, instrument)
        needs_model = build_acquisition(spec.acquisition).needs_model
        return pool, oracle, build_surrogate(spec, pool) if needs_model else None, instrument

    @classmethod
    def create(
        cls,
        run_dir: str | Path | None,
        spec: CampaignSpec | Mapping[str, Any] | str | Path,
        pool: Pool | None = None,
    ) -> "Campaign":
        """Start a new campaign in `run_dir`, or in memory when it is None. `spec` is a
        CampaignSpec, a mapping or a YAML path; `pool` replaces the spec's data section. The spec
        is checked against the pool first, so a bad spec leaves no run directory behind."""
        spec = as_spec(spec)
        pool, oracle, surrogate, instrument = cls._components(spec, pool)
        store = Store.memory(spec) if run_dir is None else Store.create(run_dir, spec)
        return cls(store, spec, pool, oracle, surrogate, instrument)

    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        spec: CampaignSpec | Mapping[str, Any] | str | Path | None = None,
        pool: Pool | None = None,
    ) -> "Campaign":
        """Reopen a run and hold its lock; `spec`, when given, must be the one the run was
        created with; `pool` is needed when the spec has no data section."""
        store = Store.open(run_dir, lock=True)
        try:
            if spec is not None and as_spec(spec).digest() != store.spec_digest:
                raise RunStateError(
                    f"{run_dir} was created with a different spec (digest {store.spec_digest}, given"
                    f" {as_spec(spec).digest()}); start a new run directory instead"
                )
            spec = store.spec()
            pool, oracle, surrogate, instrument = cls._components(spec, pool)
            try:
                pool.index_of(store.selected_ids())
            except KeyError as err:
                raise RunStateError(f"{run_dir}: selected id {err.args[0]!r} is no longer in the pool") from None
            campaign = cls(store, spec, pool, oracle, surrogate, instrument)
        except BaseException:
            store.close()
            raise
        campaign._restore_model_state()
        return campaign

    @classmethod
    def create_or_open(
        cls, run_dir: str | Path, spec: CampaignSpec | Mapping[str, Any] | str | Path, pool: Pool | None = None
    ) -> "Campaign":
        """Resume the run in `run_dir` if it holds one with this very spec, else start it."""
        if Store.exists(run_dir):
            return cls.open(run_dir, spec, pool)
        return cls.create(run_dir, spec, pool)

    def close(self) -> None:
        """Release the run record, its lock and the instrument (the campaign cannot be used
        afterwards)."""
        self.store.close()
        if hasattr(self.instrument, "close"):
            self.instrument.close()

    def __enter__(self) -> "Campaign":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _restore_model_state(self) -> None:
        """Give a warm-starting surrogate the state it had after the last recorded fit."""
        state = self.store.last_model_state()
        if state is not None and self._surrogate is not None and hasattr(self._surrogate, "set_state"):
            self._surrogate.set_state(state)

    # -- state -----------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once no batch awaits results and a stop rule holds."""
        return self.store.open_round() is None and self.stop_reason() is not None

    def stop_reason(self) -> str | None:
        """Why no new round may start (budget, max_rounds, target_value, pool exhausted), or None."""
        stop = self.spec.stop
        n_selected = len(self.store.selected_ids())
        if n_selected >= stop.budget:
            return "budget"
        if stop.max_rounds is not None and self.store.n_rounds() > stop.max_rounds:
            return "max_rounds"
        values = self._sign * self.store.training_data()[1]
        if stop.target_value is not None and values.size and values.max() >= self._sign * stop.target_value:
            return "target_value"
        if n_selected >= len(self.pool):
            return "pool exhausted"
        if hasattr(self.oracle, "reachable") and not self._available().any():
            return "no reachable candidate"
        return None

    def _available(self) -> np.ndarray:
        """(len(pool),) bool: candidates not selected yet that the oracle can still reach (an
        oracle with `reachable()`, e.g. a drifting instrument, rules some out)."""
        available = np.ones(len(self.pool), dtype=bool)
        available[self.pool.index_of(self.store.selected_ids())] = False
        if hasattr(self.oracle, "reachable"):
            available &= self.oracle.reachable()
        return available

    def summary(self, top: int = 5, recall: bool = True) -> CampaignSummary:
        """Rounds, measurement counts, the best candidates and (with known labels and `recall`)
        top-100 and top-1 % recall, which read the whole label column."""
        from .metrics import top_fraction_recall, top_k_recall

        measured = self.store.measurements()
        ok = measured.dropna(subset=["value"])
        best = ok.sort_values("value", ascending=self._sign < 0, kind="stable").head(top)
        best = best[["id", "value", "round"]].reset_index(drop=True)
        if len(self.pool.info.columns):
            info = self.pool.info.iloc[self.pool.index_of(best["id"])].reset_index(drop=True)
            best = pd.concat([best, info], axis=1)
        recall_1pct = recall_100 = None
        column = self.spec.target.column
        if recall and column in self.pool.labels.columns:
            truth = self.pool.labels[column].to_numpy()
            found = ok["value"].to_numpy()
            recall_1pct = top_fraction_recall(found, truth, 0.01, self.spec.target.goal)
            recall_100 = top_k_recall(found, truth, min(100, len(truth)), self.spec.target.goal)
        rounds = self.store.rounds()
        return CampaignSummary(
            run_dir=self.store.run_dir,
            name=self.spec.name,
            target=column,
            goal=self.spec.target.goal,
            rounds=int(rounds["finished"].notna().sum()),
            n_measured=len(ok),
            n_failed=int((measured["status"] == "failed").sum()),
            budget=self.spec.stop.budget,
            best=best,
            top1pct_recall=recall_1pct,
            top100_recall=recall_100,
            elapsed_s=float(rounds["total_s"].sum()),
            stop_reason=self.stop_reason() if self.store.open_round() is None else None,
            paused=self.store.paused(),
        )

    # -- the loop --------------------------------------------------------------------------------

    def _select(self, round_: int) -> None:
        """Choose round `round_`'s batch and record it as pending (one transaction)."""

        rng = np.random.default_rng([self.spec.seed, round_])
        selected = self.store.selected_ids()
        acq_spec, forced, instructions = self._steering(round_, set(selected))
        if forced:
            self.store.start_round(round_, forced[: self.spec.stop.budget - len(selected)], steering=instructions)
            return
        available = self._available()
        size = self.spec.initial.n if round_ == 0 else acq_spec.q
        size = min(size, self.spec.stop.budget - len(selected), int(available.sum()))
        train_ids, train_y = self.store.training_data()
        acquisition = build_acquisition(acq_spec)
        if round_ == 0 or train_y.size < 2 or not acquisition.needs_model:
            if round_ == 0:
                rows = initial_design(self.pool.X, np.flatnonzero(available), size, self.spec.initial.method, rng)
            else:
                rows = (acquisition.pick or random_pick)(np.flatnonzero(available), size, rng)
            self.store.start_round(round_, self.pool.ids[rows], steering=instructions)
            return
        if self._surrogate is None:  # an operator switched a model-free run to a model
            self._surrogate = build_surrogate(self.spec, self.pool)
        _seed_torch(self.spec.seed * 100_003 + round_)
        t0 = time.perf_counter()
        y_model = self._sign * train_y
        self.model = self._surrogate.fit(self.pool.X[self.pool.index_of(train_ids)], y_model)
        t1 = time.perf_counter()
        # a sharded pool (engine.shards) is predicted shard by shard inside select_batch
        prediction = None if hasattr(self.pool.X, "shortlist") else self.model.predict(self.pool.X)
        t2 = time.perf_counter()
        acq = acq_spec.model_copy(update={"q": size})
        chosen = select_batch(self.model, self.pool.X, available, y_model, acq, rng, prediction=prediction)
        t3 = time.perf_counter()
        self.store.start_round(
            round_,
            self.pool.ids[chosen.indices],
            mean=self._sign * np.asarray(chosen.mean),
            variance=chosen.variance,
            acquisition=chosen.acquisition,
            timings={"fit_s": t1 - t0, "predict_s": t2 - t1, "select_s": t3 - t2},
            hyperparameters=self.model.hyperparameters(),
            model_state=self.model.get_state() if hasattr(self.model, "get_state") else None,
            steering=instructions,
            record=self.model.round_record() if hasattr(self.model, "round_record") else None,
        )

    def _steering(self, round_: int, selected: set[str]) -> tuple[AcquisitionSpec, list[str], list[int]]:
        """The operator's instructions as they apply to round `round_` (see `steering`)."""
        return instructions_for_round(self.store.steering(), self.spec.acquisition, round_, selected)

    def _measure(self, round_: int, ids: list[str]) -> None:
        """Measure a pending batch. A streaming oracle's results are recorded one by one as they
        arrive; a batch oracle's in one transaction at the end."""
        t0 = time.perf_counter()
        recorded: set[str] = set()

        def record_now(m: Measurement, attempts: int) -> None:
            self.store.record(round_, [m], [attempts], measure_s=time.perf_counter() - t0)
            recorded.add(m.id)

        streaming = hasattr(self.oracle, "measure_each")
        results, attempts = measure_with_retries(
            self.oracle, ids, self.spec.oracle.max_retries, self._scalarize, on_final=record_now if streaming else None
        )
        rest = [(m, n) for m, n in zip(results, attempts) if m.id not in recorded]
        if rest:
            self.store.record(round_, [m for m, _ in rest], [n for _, n in rest], measure_s=time.perf_counter() - t0)

    def step(self) -> bool:
        """Advance by one round (finish a pending batch, or select and measure a new one);
        returns False when the campaign is over. Interactive oracles only get the batch selected."""
        pending = self.store.open_round()
        if pending is None:
            if self.stop_reason() is not None:
                return False
            self._select(self.store.n_rounds())
            pending = self.store.open_round()
        if self.oracle.interactive:
            return False
        self._measure(*pending)
        return True

    def run(self, progress: bool = True) -> CampaignSummary:
        """Run rounds until a stop rule holds (or, for ask/tell, until a batch awaits results)."""
        from .progress import progress_bar

        with progress_bar(progress) as bar:
            task = bar.add_task(self.spec.name, total=self.spec.stop.budget)
            while True:
                summary = self.summary(top=1, recall=False)
                best = "–" if summary.best_value is None else f"{summary.best_value:.4g}"
                bar.update(
                    task,
                    completed=summary.n_measured + summary.n_failed,
                    description=f"{self.spec.name} · round {summary.rounds} · best {self.spec.target.column} {best}",
                )
                if self.store.paused() or not self.step():
                    break
        return self.summary()

    def predict(self, X: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance (target units, for minimisation too) of the model fitted
        in the latest round, for feature rows X (default: the whole pool)."""
        if self.model is None:
            raise RunStateError("no model has been fitted yet: it is fitted when the first modelled batch is chosen")
        mean, variance = self.model.predict(self.pool.X if X is None else X)
        return self._sign * np.asarray(mean), np.asarray(variance)

    # -- ask / tell ------------------------------------------------------------------------------

    def ask(self) -> pd.DataFrame:
        """The batch awaiting results (selecting one first if none is pending) as a DataFrame:
        id, the pool's info columns, mean, std and acquisition. Empty once the campaign is over.
        Asking again before telling returns the same (still pending) candidates."""
        if self.store.open_round() is None:
            if self.stop_reason() is not None:
                return pd.DataFrame(columns=["id", *self.pool.info.columns, *BATCH_COLUMNS])
            self._select(self.store.n_rounds())
        _, pending = self.store.open_round()
        batch = self.store.selections().set_index("id").loc[pending]
        table = pd.DataFrame({"id": pending})
        if len(self.pool.info.columns):
            info = self.pool.info.iloc[self.pool.index_of(pending)].reset_index(drop=True)
            table = pd.concat([table, info], axis=1)
        table["mean"] = batch["mean"].to_numpy(dtype=float)
        table["std"] = np.sqrt(batch["variance"].to_numpy(dtype=float))
        table["acquisition"] = batch["acquisition"].to_numpy(dtype=float)
        return table

    def tell(self, ids: pd.DataFrame | Sequence[Any] | pd.Series, values: Sequence[float] | np.ndarray | None = None) -> int:
        """Record results for the pending batch: `tell(ids, values)` or `tell(frame)` with columns
        id and value. All or nothing: an unknown or not-pending id, a duplicate, or a missing,
        NaN or infinite value rejects the whole call with a DataError naming the ids. A part of
        the batch may be told at a time. Returns how many of the batch's results are still
        awaited (0 once the round is complete)."""
        if isinstance(ids, pd.DataFrame):
            if values is not None:
                raise DataError("give either a DataFrame with columns id and value, or ids and values")
            missing = [c for c in ("id", "value") if c not in ids.columns]
            if missing:
                raise DataError(f"results lack column(s) {', '.join(missing)}; expected columns id, value")
            ids, values = ids["id"], ids["value"]
        elif values is None:
            raise DataError("tell(ids, values): values are missing")
        id_list = [str(k).strip() for k in ids]
        numbers = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)
        if len(id_list) != len(numbers):
            raise DataError(f"{len(id_list)} id(s) but {len(numbers)} value(s)")
        if not id_list:
            raise DataError("no results given (no id, value rows)")
        opened = self.store.open_round()
        if opened is None:
            raise RunStateError("no batch is awaiting results; ask for one first (`activescope suggest`)")
        round_, pending = opened
        check_told(pd.Series(id_list), numbers, set(pending), self.pool.known(id_list))
        self.store.record(round_, [Measurement(id=k, value=float(v)) for k, v in zip(id_list, numbers)], [1] * len(id_list))
        return len(pending) - len(id_list)

    def suggest(self) -> Path:
        """Write `ask()`'s batch to `artifacts/suggest_round_<k>.csv` with an empty `value` column
        for the lab to fill in; returns the file's path."""
        batch = self.ask()
        if batch.empty:
            raise RunStateError(f"{self.store.run_dir}: the campaign is over ({self.stop_reason()}); nothing to suggest")
        batch["value"] = np.nan
        path = self.store.artifacts / f"suggest_round_{self.store.open_round()[0]}.csv"
        batch.to_csv(path, index=False)
        return path

    def tell_csv(self, results_csv: str | Path) -> tuple[int, Path | None]:
        """`tell` from a CSV file with columns id and value (e.g. a filled-in suggestion file).
        Returns (results still awaited in this round, the next suggestion file or None when the
        round is incomplete or the campaign is over)."""
        ids, values = read_results_csv(Path(results_csv))
        try:
            awaited = self.tell(ids, values)
        except DataError as err:
            raise DataError(f"{results_csv}: {err}") from None
        if awaited or self.stop_reason() is not None:
            return awaited, None
        return 0, self.suggest()
