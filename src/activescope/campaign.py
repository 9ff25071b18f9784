"""The active-learning loop: initial design, then rounds of fit → score → select → measure → record.

Each round is written in two transactions: the selected batch as `pending` before measuring,
then its measurements and the round's completion. Resuming re-uses a pending batch and measures
only its unmeasured ids, so a run killed at any point loses and repeats nothing. Randomness is
seeded per round from (spec.seed, round), so a resumed run selects what an uninterrupted one would.
Minimisation negates y for the model and acquisition; the store always holds true values.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, RunStateError, SpecError
from .models.base import Surrogate
from .oracle import Measurement, Oracle, build_scalarizer
from .oracles import build_oracle, measure_with_retries
from .pool import Pool
from .spec import CampaignSpec
from .store import Store

DIVERSE_SAMPLE = 5000  # candidates the diverse initial design spreads its points over


@dataclass
class CampaignSummary:
    """Where a campaign stands. Values are in target units; times in seconds."""

    run_dir: Path
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

    @property
    def best_value(self) -> float | None:
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


def build_surrogate(spec: CampaignSpec, pool: Pool) -> Surrogate:
    """The spec's surrogate, told the pool's feature blocks (for its `columns` option). A model
    with a `seed` option gets the campaign's seed unless the spec sets one, so repeated seeds of a
    benchmark vary the model too, not only the initial design."""
    from .models import build_model
    from .models.base import model_options

    options = spec.model.options()
    if "seed" in model_options(spec.model.kind):
        options.setdefault("seed", spec.seed)
    try:
        model = build_model(spec.model.kind, **options)
    except TypeError as err:
        raise SpecError(f"model: invalid option for kind {spec.model.kind!r}: {err}") from None
    if hasattr(model, "use_feature_blocks"):
        model.use_feature_blocks(pool.feature_kinds)
    return model


def build_pool_for(spec: CampaignSpec) -> Pool:
    """The pool named by the spec's data section (features from the disk cache when present)."""
    from .sources import build_pool

    return build_pool(spec.data.source, **spec.data.options())


class Campaign:
    """One campaign bound to its run directory. Build with `create` or `open`, not directly."""

    def __init__(
        self, store: Store, spec: CampaignSpec, pool: Pool, oracle: Oracle, surrogate: Surrogate | None
    ) -> None:
        self.store = store
        self.spec = spec
        self.pool = pool
        self.oracle = oracle
        self._surrogate = surrogate
        self.model: Surrogate | None = None  # the surrogate once fitted (kept across rounds: models may warm-start)
        self._scalarize = build_scalarizer(spec.oracle.scalarizer) if spec.oracle.scalarizer else None
        self._sign = 1.0 if spec.target.goal == "maximize" else -1.0

    @staticmethod
    def _components(spec: CampaignSpec, pool: Pool) -> tuple[Oracle, Surrogate | None]:
        """Check the spec against the pool and build its oracle and (unless random) surrogate."""
        if spec.stop.budget > len(pool):
            raise SpecError(f"stop.budget ({spec.stop.budget}) is larger than the pool ({len(pool)} candidates)")
        oracle = build_oracle(spec.oracle, pool, spec.target)
        return oracle, None if spec.acquisition.kind == "random" else build_surrogate(spec, pool)

    @classmethod
    def create(cls, run_dir: str | Path, spec: CampaignSpec, pool: Pool | None = None) -> "Campaign":
        """Start a new campaign in `run_dir` (the spec is checked against the pool first, so a
        bad spec leaves no run directory behind)."""
        pool = build_pool_for(spec) if pool is None else pool
        components = cls._components(spec, pool)
        return cls(Store.create(run_dir, spec), spec, pool, *components)

    @classmethod
    def open(cls, run_dir: str | Path, spec: CampaignSpec | None = None, pool: Pool | None = None) -> "Campaign":
        """Reopen a run; `spec`, when given, must be the one the run was created with."""
        store = Store.open(run_dir)
        if spec is not None and spec.digest() != store.spec_digest:
            raise RunStateError(
                f"{run_dir} was created with a different spec (digest {store.spec_digest}, given {spec.digest()});"
                " start a new run directory instead"
            )
        spec = store.spec()
        pool = build_pool_for(spec) if pool is None else pool
        try:
            pool.index_of(store.selected_ids())
        except KeyError as err:
            raise RunStateError(f"{run_dir}: selected id {err.args[0]!r} is no longer in the pool") from None
        return cls(store, spec, pool, *cls._components(spec, pool))

    @classmethod
    def create_or_open(cls, run_dir: str | Path, spec: CampaignSpec, pool: Pool | None = None) -> "Campaign":
        """Resume the run in `run_dir` if it holds one with this very spec, else start it."""
        if Store.exists(run_dir):
            return cls.open(run_dir, spec, pool)
        return cls.create(run_dir, spec, pool)

    # -- state -----------------------------------------------------------------------------------

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
        return None

    def summary(self, top: int = 5) -> CampaignSummary:
        """Rounds, measurement counts, the best candidates and (with known labels) top-100 and
        top-1 % recall."""
        from .metrics import top_fraction_recall, top_k_recall

        measured = self.store.measurements()
        ok = measured.dropna(subset=["value"])
        best = ok.sort_values("value", ascending=self._sign < 0, kind="stable").head(top)
        best = best[["id", "value", "round"]].reset_index(drop=True)
        if len(self.pool.info.columns):
            info = self.pool.info.iloc[self.pool.index_of(best["id"])].reset_index(drop=True)
            best = pd.concat([best, info], axis=1)
        recall = recall_100 = None
        column = self.spec.target.column
        if column in self.pool.labels.columns:
            truth = self.pool.labels[column].to_numpy()
            found = ok["value"].to_numpy()
            recall = top_fraction_recall(found, truth, 0.01, self.spec.target.goal)
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
            top1pct_recall=recall,
            top100_recall=recall_100,
            elapsed_s=float(rounds["total_s"].sum()),
            stop_reason=self.stop_reason() if self.store.open_round() is None else None,
        )

    # -- the loop --------------------------------------------------------------------------------

    def _select(self, round_: int) -> None:
        """Choose round `round_`'s batch and record it as pending (one transaction)."""
        from .acquisition import select_batch

        rng = np.random.default_rng([self.spec.seed, round_])
        selected = self.store.selected_ids()
        available = np.ones(len(self.pool), dtype=bool)
        available[self.pool.index_of(selected)] = False
        size = self.spec.initial.n if round_ == 0 else self.spec.acquisition.q
        size = min(size, self.spec.stop.budget - len(selected), int(available.sum()))
        train_ids, train_y = self.store.training_data()
        if round_ == 0 or train_y.size < 2 or self.spec.acquisition.kind == "random":
            method = self.spec.initial.method if round_ == 0 else "random"
            rows = initial_design(self.pool.X, np.flatnonzero(available), size, method, rng)
            self.store.start_round(round_, self.pool.ids[rows])
            return
        _seed_torch(self.spec.seed * 100_003 + round_)
        t0 = time.perf_counter()
        y_model = self._sign * train_y
        self.model = self._surrogate.fit(self.pool.X[self.pool.index_of(train_ids)], y_model)
        t1 = time.perf_counter()
        prediction = self.model.predict(self.pool.X)
        t2 = time.perf_counter()
        acq = self.spec.acquisition.model_copy(update={"q": size})
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
        )

    def _measure(self, round_: int, ids: list[str]) -> None:
        t0 = time.perf_counter()
        results, attempts = measure_with_retries(self.oracle, ids, self.spec.oracle.max_retries, self._scalarize)
        self.store.record(round_, results, attempts, measure_s=time.perf_counter() - t0)

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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task(self.spec.name, total=self.spec.stop.budget)
            while True:
                summary = self.summary(top=1)
                best = "–" if summary.best_value is None else f"{summary.best_value:.4g}"
                bar.update(
                    task,
                    completed=summary.n_measured + summary.n_failed,
                    description=f"{self.spec.name} · round {summary.rounds} · best {self.spec.target.column} {best}",
                )
                if not self.step():
                    break
        return self.summary()

    # -- ask / tell ------------------------------------------------------------------------------

    def suggest(self) -> Path:
        """Write the pending batch (selecting one first if none is pending) to
        artifacts/suggest_round_<k>.csv with columns id, info columns, mean, std, acquisition and
        an empty `value` column for the lab to fill in; returns the file's path."""
        if self.store.open_round() is None:
            reason = self.stop_reason()
            if reason is not None:
                raise RunStateError(f"{self.store.run_dir}: the campaign is over ({reason}); nothing to suggest")
            self._select(self.store.n_rounds())
        round_, pending = self.store.open_round()
        batch = self.store.selections().set_index("id").loc[pending]
        rows = self.pool.index_of(pending)
        table = pd.DataFrame({"id": pending})
        if len(self.pool.info.columns):
            table = pd.concat([table, self.pool.info.iloc[rows].reset_index(drop=True)], axis=1)
        table["mean"] = batch["mean"].to_numpy()
        table["std"] = np.sqrt(batch["variance"].to_numpy(dtype=float))
        table["acquisition"] = batch["acquisition"].to_numpy()
        table["value"] = np.nan
        path = self.store.artifacts / f"suggest_round_{round_}.csv"
        table.to_csv(path, index=False)
        return path

    def tell(self, results_csv: str | Path) -> Path | None:
        """Record lab results (CSV with columns id, value) for the pending batch, atomically: any
        bad row (unknown or not-suggested id, duplicate, NaN/inf value) rejects the whole file.
        Returns the next suggestion file once the batch is complete, or None when the campaign
        is over or results are still awaited."""
        path = Path(results_csv)
        if not path.is_file():
            raise DataError(f"results file not found: {path}")
        try:
            table = pd.read_csv(path, dtype={"id": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read CSV: {err}") from None
        missing = [c for c in ("id", "value") if c not in table.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected columns id, value")
        opened = self.store.open_round()
        if opened is None:
            raise RunStateError(f"{self.store.run_dir}: no batch is awaiting results; run `activescope suggest` first")
        round_, pending = opened
        ids = table["id"].astype(str).str.strip()
        values = pd.to_numeric(table["value"], errors="coerce").to_numpy(dtype=float)
        _check_told(path, ids, values, set(pending), set(self.pool.ids.tolist()))
        self.store.record(round_, [Measurement(id=k, value=float(v)) for k, v in zip(ids, values)], [1] * len(ids))
        if self.store.open_round() is not None or self.stop_reason() is not None:
            return None
        return self.suggest()


def _check_told(path: Path, ids: pd.Series, values: np.ndarray, pending: set[str], known: set[str]) -> None:
    """Raise DataError naming the offending ids of a results file (nothing is recorded)."""

    def named(bad) -> str:
        bad = list(dict.fromkeys(bad))
        return ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")

    unknown = [k for k in ids if k not in known]
    if unknown:
        raise DataError(f"{path}: unknown id(s) {named(unknown)}")
    foreign = [k for k in ids if k not in pending]
    if foreign:
        raise DataError(f"{path}: id(s) {named(foreign)} are not awaiting results in this round")
    duplicated = ids[ids.duplicated()].tolist()
    if duplicated:
        raise DataError(f"{path}: duplicate id(s) {named(duplicated)}")
    bad_values = ids[~np.isfinite(values)].tolist()
    if bad_values:
        raise DataError(f"{path}: missing, NaN or infinite value(s) for id(s) {named(bad_values)}")
