"""Structured GP for hypothesis learning (`model: {kind: hypothesis}`).

The GP's prior mean is a parametric physical law (`law.py`): an expression over named descriptors
(feature columns, in their raw units) and named parameters with priors; an ARD RBF kernel on the
z-scored inputs models what the law leaves unexplained. Two inference modes:

- ``map`` (default, fast): law parameters, kernel hyperparameters and noise are fitted jointly by
  maximising the exact marginal likelihood plus the log priors (Adam; the likelihood in plain
  torch with an analytic gradient, `exact_neg_mll`, equal to GPyTorch's), starting from the best
  of a few prior draws; prediction is the plain GP's (`gp.py`). With ``law_uncertainty`` the
  predictive variance also carries the law parameters' uncertainty (linearised Laplace).
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
from gpytorch.kernels import ScaleKernel
from pydantic import Field, model_validator

from ..engine.errors import SpecError
from ..engine.registry import register_model
from ._torch import PREDICT_BATCH_ROWS, Scaler, check_training_data, row_batches
from .base import ModelOptions, Positive, check_options
from .gp import ExactGPModel, GPSurrogate, PosteriorCache, make_kernel, make_likelihood
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
    law_uncertainty: bool = Field(
        False,
        description="MAP: add the law parameters' uncertainty to predictive variances (linearised Laplace "
        "approximation at the MAP fit; exact for laws linear in their parameters)",
    )
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


CHOLESKY_JITTER = (1e-8, 1e-7, 1e-6)
"""Diagonal jitter tried in turn when a covariance is not numerically positive definite (float64;
the values and order GPyTorch's `psd_safe_cholesky` uses)."""


def safe_cholesky(covariance: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of a symmetric positive definite (n, n) matrix, retrying with
    `CHOLESKY_JITTER` on the diagonal when the factorisation fails; raises
    `torch.linalg.LinAlgError` when even the largest jitter does not help."""
    factor, info = torch.linalg.cholesky_ex(covariance)
    if info.any() and torch.isnan(covariance).any():
        raise torch.linalg.LinAlgError("covariance has NaN entries: the law or the GP hyperparameters became undefined")
    for jitter in CHOLESKY_JITTER:
        if not info.any():
            return factor
        eye = torch.eye(len(covariance), dtype=covariance.dtype, device=covariance.device)
        factor, info = torch.linalg.cholesky_ex(covariance + jitter * eye)
    if info.any():
        raise torch.linalg.LinAlgError(f"covariance not positive definite even with jitter {CHOLESKY_JITTER[-1]:g}")
    return factor


class _GaussianEnergy(torch.autograd.Function):
    """r^T C^-1 r / 2 + log det C / 2 with C = K + noise I, for a dense kernel matrix K (n, n),
    a noise variance (1,) and a residual r (n,).

    The backward pass is analytic: dC = (C^-1 - a a^T) / 2, dnoise = trace(dC) and dr = a with
    a = C^-1 r, so a step costs one Cholesky factorisation and one `cholesky_inverse` (about n^3
    flops in all) where autograd through the factorisation and the solve costs two full
    triangular solves more.
    """

    @staticmethod
    def forward(ctx: Any, kernel_matrix: torch.Tensor, noise: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        covariance = kernel_matrix.clone()
        covariance.diagonal().add_(noise)
        factor = safe_cholesky(covariance)
        weights = torch.cholesky_solve(residual.unsqueeze(-1), factor).squeeze(-1)
        ctx.save_for_backward(factor, weights)
        ctx.noise_shape = noise.shape
        return 0.5 * (residual @ weights) + torch.log(torch.diagonal(factor)).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        factor, weights = ctx.saved_tensors
        grad_covariance = torch.cholesky_inverse(factor).addr_(weights, weights, alpha=-1.0).mul_(0.5 * grad)
        grad_noise = grad_covariance.diagonal().sum().reshape(ctx.noise_shape)
        return grad_covariance, grad_noise, grad * weights


def rbf_covariance(kernel: ScaleKernel, x: torch.Tensor) -> torch.Tensor:
    """Dense (n, n) matrix of a scaled ARD RBF kernel on inputs x (n, d), in plain torch:
    outputscale * exp(-|z_i - z_j|^2 / 2) on lengthscale-divided, centred inputs z, as GPyTorch's
    `ScaleKernel(RBFKernel)` computes it (up to rounding), without its lazy-tensor machinery."""
    z = x / kernel.base_kernel.lengthscale
    z = z - z.mean(0)
    norms = z.square().sum(-1)
    squared = torch.addmm(norms[:, None] + norms[None, :], z, z.T, alpha=-2.0)
    return kernel.outputscale * torch.exp(squared.mul_(-0.5))


def exact_neg_mll(model: ExactGPModel, train_x: torch.Tensor, train_y: torch.Tensor) -> torch.Tensor:
    """Negative exact log marginal likelihood per training point, the GP's registered priors
    (lengthscales, noise) included: what `-gpytorch.mlls.ExactMarginalLogLikelihood` returns for
    a Gaussian likelihood and a scaled ARD RBF kernel, in plain torch
    (y ~ N(m(X), K(X, X) + noise I), standardised units).

    About 2.4 times as fast per Adam step at 500 points (16 against 39 ms of CPU at best, loaded
    machine): the gradient of the Gaussian term is analytic (`_GaussianEnergy`) and the kernel is
    built directly (`rbf_covariance`), instead of autograd through GPyTorch's linear operators.
    """
    n = len(train_y)
    kernel_matrix = rbf_covariance(model.covar_module, train_x)
    residual = train_y - model.mean_module(train_x)
    value = _GaussianEnergy.apply(kernel_matrix, model.likelihood.noise, residual) + 0.5 * n * math.log(2 * math.pi)
    for _, module, prior, closure, _ in model.named_priors():
        value = value - prior.log_prob(closure(module)).sum()
    return value / n


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

    def _evaluate(self, z: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The law at scaled inputs z (..., d) with parameter `values` (own scale; broadcasting
        against the descriptors), in standardised target units."""
        x = z * self.x_scale + self.x_shift
        env: dict[str, Any] = {name: x[..., col] for name, col in self.columns.items()} | values
        value = torch.as_tensor(self.law(self._ops, env), dtype=z.dtype, device=z.device)
        return (value * self.unit - self.y_shift) / self.y_scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The law's value at scaled inputs z (..., d), in standardised target units."""
        return self._evaluate(z, self.values()).expand(z.shape[:-1])

    def least_squares_scores(self, z: torch.Tensor, y: torch.Tensor, candidates: list[dict[str, float]]) -> np.ndarray:
        """GP-free score of each candidate parameter set (own scale) on scaled inputs z (n, d)
        and standardised targets y (n,): mean squared residual minus log prior / n, evaluated
        for all candidates at once; inf where the law is undefined."""
        values = {
            p: torch.tensor([c[p] for c in candidates], dtype=z.dtype, device=z.device)[:, None] for p in self.law.parameters
        }
        with torch.no_grad():
            residual = y - self._evaluate(z, values)
            log_prior = sum(self.law.priors[p].torch().log_prob(v[:, 0]) for p, v in values.items())
            scores = residual.square().mean(-1) - log_prior / len(y)
        return torch.where(torch.isfinite(scores), scores, math.inf).cpu().numpy()


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
        law_uncertainty: bool = False,
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
        self._law_covariance: tuple[torch.Tensor, torch.Tensor] | None = None

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
        """Posterior mean and latent variance (target units, noise excluded), in row batches;
        with `law_uncertainty` the MAP variance includes the law parameters' uncertainty."""
        if self.inference == "map":
            mean, variance = super().predict(X)
            if self.law_uncertainty and self._law.parameters:
                block = self._checked(X)
                for rows in row_batches(len(block), self.batch_rows):
                    spread = self._law_spread(self._inputs(block[rows]))
                    variance[rows] += ((spread @ self._law_covariance[0]) * spread).sum(-1).cpu().numpy() * float(self._y_scaler.scale) ** 2
            return mean, variance
        if self._nuts is None:
            raise RuntimeError("call fit() before predicting")
        block = self._checked(X).astype(np.float64)
        mean, variance = self._nuts.predict(self._x_scaler.apply(block), block)
        return self._unscale(mean, variance)

    def predict_joint(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint posterior over a small candidate set (MAP mode; NUTS gives independent variances)."""
        if self.inference == "map":
            mean, covariance = super().predict_joint(X)
            if self.law_uncertainty and self._law.parameters:
                spread = self._law_spread(self._inputs(self._checked(X)))
                covariance += (spread @ self._law_covariance[0] @ spread.T).cpu().numpy() * float(self._y_scaler.scale) ** 2
            return mean, covariance
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

    def _loss(self) -> torch.Tensor:
        """Negative log marginal likelihood plus log priors (GP and law), per training point."""
        model = self._model
        train_x, train_y = model.train_inputs[0], model.train_targets
        return exact_neg_mll(model, train_x, train_y) - model.mean_module.log_prior() / len(train_y)

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

        mean.set_values(candidates[int(np.argmin(mean.least_squares_scores(train_x, train_y, candidates)))])
        optimiser = torch.optim.Adam(mean.parameters(), lr=self.lr)
        for _ in range(self.fit_iters if fresh else self.warm_iters):
            optimiser.zero_grad()
            loss().backward()
            optimiser.step()

    def _optimise(self, iterations: int) -> None:
        """Maximise marginal likelihood + log priors (law and GP) with Adam (`exact_neg_mll`)."""
        model = self._model
        model.mean_module.set_scalers(self._x_scaler, self._y_scaler)
        model.train()
        self._prefit_law(fresh=iterations == self.fit_iters)
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
        for _ in range(iterations):
            optimiser.zero_grad()
            loss = self._loss()
            loss.backward()
            optimiser.step()
        self._final_loss = float(loss.item())
        model.eval()

    def _law_jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """d law / d parameters (m, p) at scaled inputs z (m, d), standardised target units per
        parameter unit, at the fitted values: one backward pass, each row owning a copy of the
        parameters."""
        mean = self._model.mean_module
        copies = {p: v.detach().expand(len(z)).clone().requires_grad_(True) for p, v in mean.values().items()}
        with torch.enable_grad():
            value = mean._evaluate(z, copies).expand(len(z))
            grads = torch.autograd.grad(value.sum(), list(copies.values()), allow_unused=True)
        return torch.stack([torch.zeros(len(z), dtype=z.dtype, device=z.device) if g is None else g for g in grads], -1)

    def _law_spread(self, z: torch.Tensor) -> torch.Tensor:
        """J(z) - k(z, X) C^-1 J(X) (m, p): how a change of the law's parameters moves the
        posterior mean at z (the GP pulls it back towards the data near measured points)."""
        with torch.no_grad():
            cross = self._model.covar_module(z, self._cache.train_latent).to_dense()
        return self._law_jacobian(z) - cross @ self._law_covariance[1]

    def _laplace_law_covariance(self, train_x: torch.Tensor, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Linearised Laplace posterior covariance of the law parameters at the MAP fit, with the
        kernel and noise fixed: (J^T C^-1 J + H)^-1 (p, p), J = d law / d parameters on the
        training inputs, C the training covariance (factor = chol C) and H the prior's curvature
        (-d^2 log prior; where that is not positive, e.g. Uniform, 1 / prior variance); also
        returns C^-1 J (n, p). Exact for a law linear in its parameters with Normal priors
        (a GP with a random linear mean, Rasmussen & Williams 2006, sec. 2.7)."""
        jacobian = self._law_jacobian(train_x)
        solved = torch.cholesky_solve(jacobian, factor)
        curvature = []
        for name, value in self._model.mean_module.values().items():
            prior = self._law.priors[name].torch()
            theta = value.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                log_density = prior.log_prob(theta)  # a Uniform's does not depend on theta
                slope = torch.autograd.grad(log_density, theta, create_graph=True)[0] if log_density.requires_grad else None
                bend = -float(torch.autograd.grad(slope, theta)[0]) if slope is not None and slope.requires_grad else 0.0
            curvature.append(bend if bend > 0 else 1.0 / float(prior.variance))
        precision = jacobian.T @ solved + torch.diag(torch.tensor(curvature, dtype=jacobian.dtype, device=jacobian.device))
        return torch.linalg.inv(0.5 * (precision + precision.T)), solved

    def _posterior_cache(self) -> PosteriorCache:
        """K^-1 (y - m) and R = L^-T (K^-1 = R R^T, K = LL^T with noise) from one plain-torch
        Cholesky factor, the same covariance as `exact_neg_mll` (GPSurrogate's goes through
        GPyTorch's root decompositions, about twice as slow at 500 points). With
        `law_uncertainty` also the law parameters' Laplace covariance."""
        model = self._model
        train_x, train_y = model.train_inputs[0], model.train_targets
        with torch.no_grad():
            covariance = rbf_covariance(model.covar_module, train_x)
            covariance.diagonal().add_(model.likelihood.noise)
            factor = safe_cholesky(covariance)
            residual = (train_y - model.mean_module(train_x)).unsqueeze(-1)
            eye = torch.eye(len(train_y), dtype=factor.dtype, device=factor.device)
            root_inverse = torch.linalg.solve_triangular(factor, eye, upper=False).mT
            if self.law_uncertainty and self._law.parameters:
                self._law_covariance = self._laplace_law_covariance(train_x, factor)
            return PosteriorCache(
                train_latent=train_x,
                mean_weights=torch.cholesky_solve(residual, factor).squeeze(-1),
                root_inverse=root_inverse,
                root_inverse_f32=root_inverse.float(),
            )
