"""Structured GP for hypothesis learning (`model: {kind: hypothesis}`).

The GP's prior mean is a parametric physical law (`law.py`): an expression over named descriptors
(feature columns, in their raw units) and named parameters with priors; an ARD RBF kernel on the
z-scored inputs models what the law leaves unexplained. Two inference modes:

- ``map`` (default, fast): law parameters, kernel hyperparameters and noise are fitted jointly by
  maximising the exact marginal likelihood plus the log priors (GPyTorch, Adam), starting from the
  best of a few prior draws; the posterior machinery is the plain GP's (`gp.py`).
- ``nuts``: the full posterior by NUTS in NumPyro (`hypothesis_nuts.py`), with split R-hat and
  ESS, an automatic restart with a longer warm-up and a new seed when R-hat > 1.1, and an error
  when sampling diverges. Predictions average the GP posterior over thinned posterior draws.
  With ``nuts_kernel: map`` the residual kernel and noise are fixed at a MAP fit (empirical
  Bayes) and NUTS samples the law parameters only: one Cholesky factor serves every step.

The law describes the target as the model receives it, divided by `target_scale`. A campaign
with goal `minimize` hands models -y, so there the law must describe -y.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import gpytorch
import numpy as np
import torch
from pydantic import Field, model_validator

from ..engine.errors import SpecError
from ..engine.registry import register_model
from ._torch import PREDICT_BATCH_ROWS, Scaler, check_training_data
from .base import ModelOptions, Positive, check_options
from .gp import ExactGPModel, GPSurrogate, make_kernel, make_likelihood
from .law import Law, Prior, parse_law, parse_prior, torch_ops


class HypothesisOptions(ModelOptions):
    """Options of `model: {kind: hypothesis}`."""

    law: str = Field(description="mean function, e.g. \"E * (1 + (x0 / s)**2)\", over descriptors and parameters")
    priors: dict[str, str] = Field(
        description="prior of every law parameter, e.g. {E: \"Normal(-4, 2)\", s: \"Gamma(2, 0.05)\"}"
    )
    descriptors: list[str] | None = Field(
        None, description="names the law uses for the model's feature columns, in order; default the pool's feature names"
    )
    target_scale: Positive = Field(1.0, description="the law describes y / target_scale (e.g. 100 for hectohartree)")
    inference: Literal["map", "nuts"] = Field("map", description="map: fast point fit; nuts: full posterior (NumPyro)")
    fit_iters: int = Field(150, ge=1, description="Adam steps on a fresh MAP fit")
    warm_iters: int = Field(40, ge=1, description="Adam steps when a MAP fit starts from the previous round")
    lr: Positive = Field(0.05, description="Adam step size (MAP)")
    warm_start: bool = Field(True, description="start each round's MAP fit from the previous round's values")
    starts: int = Field(32, ge=1, description="law starting points (prior draws) scored before each MAP fit")
    num_warmup: int = Field(300, ge=10, description="NUTS warm-up steps per chain (doubled on each restart)")
    num_samples: int = Field(300, ge=10, description="NUTS samples kept per chain")
    num_chains: int = Field(2, ge=1, description="NUTS chains (run vectorised on one device)")
    max_restarts: int = Field(2, ge=0, description="NUTS reruns (longer warm-up, new seed) while R-hat > 1.1")
    max_divergent: float = Field(0.05, ge=0, le=1, description="largest tolerated fraction of divergent NUTS transitions")
    max_tree_depth: int = Field(8, ge=1, le=12, description="NUTS tree depth limit (at most 2^depth - 1 steps per draw)")
    nuts_kernel: Literal["sample", "map"] = Field(
        "sample",
        description="sample: NUTS samples the residual kernel and noise too; map: they are fixed at the MAP fit "
        "(empirical Bayes) and NUTS samples the law parameters only, O(n^2) per step instead of O(n^3)",
    )
    predict_samples: int = Field(32, ge=1, description="posterior draws averaged in NUTS predictions")
    seed: int = Field(0, description="seed of the MAP starting draws and of NUTS")
    batch_rows: int = Field(PREDICT_BATCH_ROWS, ge=1, description="prediction batch (memory grows as batch_rows x n_train)")

    @model_validator(mode="after")
    def _law_parses(self) -> "HypothesisOptions":
        import importlib.util

        if self.inference == "nuts" and importlib.util.find_spec("numpyro") is None:
            raise ValueError("inference: nuts needs NumPyro and JAX: pip install 'activescope[hypothesis]'")
        try:
            priors = {name: parse_prior(text, name) for name, text in self.priors.items()}
            parse_law(self.law, self.priors, self.descriptors or _free_names(self.law, priors))
        except SpecError as err:
            raise ValueError(str(err)) from None
        return self


def _free_names(expression: str, priors: dict[str, Prior]) -> list[str]:
    """Names of a law that are not parameters (its descriptors, before the pool is known)."""
    import ast

    from .law import FUNCTIONS

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return []
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(priors) - set(FUNCTIONS))


def _constrain(prior: Prior, raw: torch.Tensor) -> torch.Tensor:
    """Map an unconstrained value onto the prior's support."""
    low, high = prior.support
    if math.isinf(low):
        return raw
    if math.isinf(high):
        return low + torch.nn.functional.softplus(raw)
    return low + (high - low) * torch.sigmoid(raw)


def _unconstrain(prior: Prior, value: float) -> float:
    low, high = prior.support
    if math.isinf(low):
        return value
    if math.isinf(high):
        excess = max(value - low, 1e-9)
        return excess + math.log(-math.expm1(-excess))
    frac = min(max((value - low) / (high - low), 1e-9), 1 - 1e-9)
    return math.log(frac / (1 - frac))


class LawMean(gpytorch.means.Mean):
    """GP prior mean from a law, in the standardised target units the GP works in.

    Receives z-scored inputs, undoes the scaling for the law (which reads raw descriptors), and
    maps the law's value (target / unit) back to standardised units.
    """

    def __init__(self, law: Law, columns: dict[str, int], unit: float, n_dims: int) -> None:
        super().__init__()
        self.law = law
        self.columns = columns
        self.unit = unit
        self._ops = torch_ops()
        for name in law.parameters:
            prior = law.priors[name]
            start = torch.tensor(_unconstrain(prior, prior.center), dtype=torch.float64)
            self.register_parameter(f"raw_{name}", torch.nn.Parameter(start))
        for name, size in (("x_shift", n_dims), ("x_scale", n_dims), ("y_shift", ()), ("y_scale", ())):
            self.register_buffer(name, torch.ones(size, dtype=torch.float64))

    def values(self) -> dict[str, torch.Tensor]:
        """Law parameters on their own scale (the priors' units)."""
        return {p: _constrain(self.law.priors[p], getattr(self, f"raw_{p}")) for p in self.law.parameters}

    def set_values(self, values: dict[str, float]) -> None:
        """Set law parameters from values on their own scale."""
        with torch.no_grad():
            for p, v in values.items():
                getattr(self, f"raw_{p}").fill_(_unconstrain(self.law.priors[p], float(v)))

    def set_scalers(self, x: Scaler, y: Scaler) -> None:
        """Record the input and target standardisation of the current fit."""
        for name, value in (("x_shift", x.shift), ("x_scale", x.scale), ("y_shift", y.shift), ("y_scale", y.scale)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(value, dtype=np.float64)))

    def log_prior(self) -> torch.Tensor:
        """Sum of the law parameters' log prior densities."""
        values = self.values()
        terms = [self.law.priors[p].torch().log_prob(values[p]) for p in self.law.parameters]
        return torch.stack(terms).sum() if terms else torch.zeros((), dtype=torch.float64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The law's value at scaled inputs z (..., d), in standardised target units."""
        x = z * self.x_scale + self.x_shift
        env: dict[str, Any] = {name: x[..., col] for name, col in self.columns.items()} | self.values()
        value = torch.as_tensor(self.law(self._ops, env), dtype=z.dtype, device=z.device)
        return ((value * self.unit - self.y_shift) / self.y_scale).expand(z.shape[:-1])


@register_model("hypothesis", HypothesisOptions)
class HypothesisSurrogate(GPSurrogate):
    """GP whose mean function is a parametric law with priors (hypothesis learning).

    Example::

        model = HypothesisSurrogate(law="a * x**2 + b", priors={"a": "Normal(0, 2)", "b": "Normal(0, 5)"},
                                    descriptors=["x"])
        mean, variance = model.fit(X, y).predict(X_pool)
        model.posterior_summary()   # {"a": {"mean": ..., ...}, "b": {...}}
    """

    def __init__(
        self,
        law: str,
        priors: dict[str, str],
        descriptors: list[str] | None = None,
        target_scale: float = 1.0,
        inference: str = "map",
        columns: str | None = None,
        fit_iters: int = 150,
        warm_iters: int = 40,
        lr: float = 0.05,
        warm_start: bool = True,
        starts: int = 32,
        num_warmup: int = 300,
        num_samples: int = 300,
        num_chains: int = 2,
        max_restarts: int = 2,
        max_divergent: float = 0.05,
        max_tree_depth: int = 8,
        nuts_kernel: str = "sample",
        predict_samples: int = 32,
        seed: int = 0,
        batch_rows: int = PREDICT_BATCH_ROWS,
    ) -> None:
        options = check_options(HypothesisOptions, locals())
        options["law_text"] = options.pop("law")
        vars(self).update(options)
        self.kernel, self.mean = "rbf", "law"
        from ._torch import choose_device

        self.device = choose_device()
        self._model = None
        self._cache = None
        self._final_loss = float("nan")
        self._pool_names: list[str] | None = None
        self._law: Law | None = None
        self._nuts: Any = None
        self._nuts_compiled: dict[Any, Any] | None = None

    def use_feature_names(self, names: list[str]) -> None:
        """Take descriptor names from the pool's feature names (`Pool.feature_names`) and check
        the law against them now, before a campaign records anything."""
        self._pool_names = list(names)
        self._law = self._resolve_law(len(names))

    def _names(self, n_pool_columns: int) -> list[str]:
        """Descriptor names of the model's columns: the pool's feature names as identifiers
        ("rdkit2d:TPSA" -> "TPSA" when unambiguous), else x0, x1, ..."""
        if self._pool_names is not None and len(self._pool_names) == n_pool_columns:
            names = [re.sub(r"\W", "_", name) for name in self._pool_names]
            short = [re.sub(r"\W", "_", name.rpartition(":")[2]) for name in self._pool_names]
            names = short if len(set(short)) == len(short) else names
            names = [name if name.isidentifier() else f"_{name}" for name in names]
        else:
            names = [f"x{i}" for i in range(n_pool_columns)]
        return list(np.asarray(names, dtype=object)[self._column_slice])

    def _resolve_law(self, n_pool_columns: int) -> Law:
        names = self._names(n_pool_columns)
        if self.descriptors is not None:
            if len(self.descriptors) != len(names):
                raise SpecError(
                    f"model.descriptors: {len(self.descriptors)} name(s) given but the model sees {len(names)} feature column(s)"
                )
            names = list(self.descriptors)
        law = parse_law(self.law_text, self.priors, names)
        self._columns = {name: names.index(name) for name in law.descriptors}
        return law

    def fit(self, X: np.ndarray, y: np.ndarray) -> "HypothesisSurrogate":
        """Fit on measured rows X (n, d) and targets y (n,): MAP or NUTS (see the module doc)."""
        X, y = check_training_data(X, y)
        self._law = self._law or self._resolve_law(X.shape[1])
        if self.inference == "map":
            return super().fit(X, y)
        from .hypothesis_nuts import NutsFit

        self._n_pool_columns = X.shape[1]
        block = self._select(X).astype(np.float64)
        fixed = None
        if self.nuts_kernel == "map":
            self._model = None  # a fresh MAP fit every round, so a resumed run fits as an uninterrupted one
            super().fit(X, y)
            fixed = self._map_values()
        else:
            self._x_scaler, self._y_scaler = Scaler.fit(block), Scaler.fit(y)
        self._nuts = NutsFit.run(self, self._x_scaler.apply(block), block, self._y_scaler.apply(y), fixed)
        return self

    def _map_values(self) -> dict[str, Any]:
        """The MAP fit's law parameters and residual-GP hyperparameters (standardised units)."""
        model, _ = self._fitted()
        values = {p: float(v.detach()) for p, v in model.mean_module.values().items()}
        return values | {
            "lengthscale": model.covar_module.base_kernel.lengthscale.detach().cpu().numpy().ravel(),
            "outputscale": float(model.covar_module.outputscale.item()),
            "noise": float(model.likelihood.noise.item()),
        }

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and latent variance (target units, noise excluded), in row batches."""
        if self.inference == "map":
            return super().predict(X)
        if self._nuts is None:
            raise RuntimeError("call fit() before predicting")
        block = self._checked(X).astype(np.float64)
        mean, variance = self._nuts.predict(self._x_scaler.apply(block), block)
        return self._unscale(mean, variance)

    def predict_joint(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint posterior over a small candidate set (MAP mode; NUTS gives independent variances)."""
        if self.inference == "map":
            return super().predict_joint(X)
        mean, variance = self.predict(X)
        return mean, np.diag(variance)

    def get_state(self) -> bytes:
        """The MAP fit's parameters for a warm start (NUTS runs start afresh: no state)."""
        return super().get_state() if self.inference == "map" else b""

    def set_state(self, state: bytes) -> None:
        """Restore `get_state()`'s output (see GPSurrogate.set_state)."""
        if state and self.inference == "map":
            if self._law is None:
                import safetensors.torch

                n_columns = len(self._pool_names) if self._pool_names else safetensors.torch.load(state)["x_shift"].numel()
                self._law = self._resolve_law(int(n_columns))
            super().set_state(state)

    def posterior_summary(self) -> dict[str, dict[str, float]]:
        """Per law parameter: mean (MAP: the point estimate), and with NUTS sd, q5, q95, r_hat, ess."""
        if self._nuts is not None and self.inference == "nuts":
            return self._nuts.summary(self._law.parameters)
        model, _ = self._fitted()
        return {p: {"mean": float(v.detach())} for p, v in model.mean_module.values().items()}

    def hyperparameters(self) -> dict[str, float]:
        """Law parameters (posterior means, `law.<name>`) plus the GP's noise (target units
        squared), outputscale and lengthscales (standardised units) and, with NUTS, the largest
        R-hat, the smallest ESS, restarts and divergences."""
        params = {f"law.{p}": s["mean"] for p, s in self.posterior_summary().items()}
        if self.inference == "nuts":
            return params | self._nuts.diagnostics(float(self._y_scaler.scale))
        model, _ = self._fitted()
        lengthscale = model.covar_module.base_kernel.lengthscale.detach().cpu().numpy().ravel()
        return params | {
            "noise": float(model.likelihood.noise.item()) * float(self._y_scaler.scale) ** 2,
            "outputscale": float(model.covar_module.outputscale.item()),
            "neg_mll": self._final_loss,
            "lengthscale_min": float(lengthscale.min()),
            "lengthscale_max": float(lengthscale.max()),
        }

    # ----- MAP internals -------------------------------------------------------------------------
    def _build(self, train_x: torch.Tensor, train_y: torch.Tensor) -> ExactGPModel:
        n_dims = train_x.shape[1]
        mean = LawMean(self._law, self._columns, self.target_scale, n_dims)
        return ExactGPModel(train_x, train_y, make_likelihood(), make_kernel("rbf", n_dims), mean_module=mean)

    def _loss(self, mll: gpytorch.mlls.ExactMarginalLogLikelihood) -> torch.Tensor:
        model = self._model
        train_x, train_y = model.train_inputs[0], model.train_targets
        return -mll(model(train_x), train_y) - model.mean_module.log_prior() / len(train_y)

    def _prefit_law(self, fresh: bool) -> None:
        """Fit the law alone first (GP-free least squares plus log priors): score the prior
        centre (or, warm, the previous values) and `starts - 1` prior draws, then polish the best
        with Adam (`fit_iters` steps, or `warm_iters` on a warm start). Without it the joint fit often stops where the residual GP absorbs a badly
        placed law (e.g. a transition at the wrong point)."""
        model = self._model
        mean, train_x, train_y = model.mean_module, model.train_inputs[0], model.train_targets
        priors, parameters = self._law.priors, self._law.parameters
        if not parameters:
            return
        rng = np.random.default_rng([self.seed, len(train_y)])
        first = {p: priors[p].center for p in parameters} if fresh else {p: float(v.detach()) for p, v in mean.values().items()}
        candidates = [first] + [{p: priors[p].sample(rng) for p in parameters} for _ in range(self.starts - 1)]

        def loss() -> torch.Tensor:
            return (train_y - mean(train_x)).square().mean() - mean.log_prior() / len(train_y)

        with torch.no_grad():
            scores = []
            for values in candidates:
                mean.set_values(values)
                value = loss()
                scores.append(float(value) if torch.isfinite(value) else math.inf)
        mean.set_values(candidates[int(np.argmin(scores))])
        optimiser = torch.optim.Adam(mean.parameters(), lr=self.lr)
        for _ in range(self.fit_iters if fresh else self.warm_iters):
            optimiser.zero_grad()
            loss().backward()
            optimiser.step()

    def _optimise(self, iterations: int) -> None:
        """Maximise marginal likelihood + log priors (law and GP) with Adam."""
        model = self._model
        model.mean_module.set_scalers(self._x_scaler, self._y_scaler)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        model.train()
        self._prefit_law(fresh=iterations == self.fit_iters)
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
        for _ in range(iterations):
            optimiser.zero_grad()
            loss = self._loss(mll)
            loss.backward()
            optimiser.step()
        self._final_loss = float(loss.item())
        model.eval()
