"""Exact Gaussian process surrogate (`model: {kind: gp}`) and the GPyTorch machinery DKL reuses.

Inputs are z-scored on the training rows (except for the Tanimoto kernel, which needs raw
counts), targets are standardised, and hyperparameters are fitted by maximising the exact
marginal likelihood with a bounded Adam loop. Prediction does not go through ExactGP.__call__,
which evaluates the kernel on the concatenated (train + test) inputs and so grows quadratically
with the batch; instead GPyTorch's own solves are cached once per fit (K^-1 r and a root of K^-1,
both from linear_operator) and each batch of candidates costs one (batch, n) kernel block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Literal

import gpytorch
import numpy as np
import safetensors.torch
import torch
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel, MaternKernel, RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.priors import LogNormalPrior
from pydantic import Field

from ..engine.errors import DataError
from ..engine.registry import register_model
from ._torch import PREDICT_BATCH_ROWS, Scaler, check_prediction_input, check_training_data, choose_device, row_batches
from .base import ColumnSelection, ModelOptions, Positive, check_options
from .kernels import CountLevels, TanimotoKernel, pool_count_levels, tanimoto_from_intersection

EXACT_SOLVE_UP_TO = 4096
"""Training-set size up to which the posterior caches use Cholesky (beyond it GPyTorch uses Lanczos)."""


class ExactGPModel(gpytorch.models.ExactGP):
    """Constant mean + given kernel, optionally on the output of a feature extractor (DKL)."""

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        likelihood: gpytorch.likelihoods.GaussianLikelihood,
        covar_module: Kernel,
        feature_extractor: torch.nn.Module | None = None,
        mean_module: gpytorch.means.Mean | None = None,
    ) -> None:
        super().__init__(train_x, train_y, likelihood)
        self.mean_module = mean_module if mean_module is not None else gpytorch.means.ConstantMean()
        self.covar_module = covar_module
        self.feature_extractor = feature_extractor

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs as the kernel sees them: x itself, or the feature extractor's output."""
        return x if self.feature_extractor is None else self.feature_extractor(x)

    def forward(self, x: torch.Tensor) -> MultivariateNormal:
        """Prior over f at the (scaled) inputs x (n, d): mean and kernel evaluated on `latent(x)`."""
        z = self.latent(x)
        return MultivariateNormal(self.mean_module(z), self.covar_module(z))


@dataclass(frozen=True)
class PosteriorCache:
    """Per-fit quantities that make batched prediction one kernel block per batch.

    train_latent: (n, p) training inputs in kernel space; mean_weights: K^-1 (y - m), (n,);
    root_inverse: R with K^-1 = R R^T, (n, r); K includes the observation noise.
    root_inverse_f32: R in float32 for whole-pool variances, whose (m, n) x (n, r) product
    dominates prediction cost; float32 halves it, and its relative error (~1e-6) is far below
    any variance that matters for ranking candidates.
    """

    train_latent: torch.Tensor
    mean_weights: torch.Tensor
    root_inverse: torch.Tensor
    root_inverse_f32: torch.Tensor


def make_kernel(kind: str, n_dims: int, active_dims: tuple[int, ...] | None = None) -> Kernel:
    """Scaled ARD Matern-5/2, ARD RBF or Tanimoto kernel (on the input columns `active_dims`, by
    default all n_dims of them).

    Lengthscales get BoTorch's dimension-scaled LogNormal prior (median grows like sqrt(d), which
    keeps high-dimensional fits from collapsing onto a few points) and start at its mode; unlike
    BoTorch's own modules they are softplus-constrained, so plain Adam can optimise them.
    """
    if kind == "tanimoto":
        return ScaleKernel(TanimotoKernel(active_dims=active_dims))
    prior = LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(n_dims), scale=math.sqrt(3))
    kernel_type = RBFKernel if kind == "rbf" else partial(MaternKernel, nu=2.5)
    base = kernel_type(ard_num_dims=n_dims, lengthscale_prior=prior, lengthscale_constraint=GreaterThan(1e-3),
                       active_dims=active_dims)
    base.lengthscale = prior.mode
    return ScaleKernel(base)


def make_likelihood() -> GaussianLikelihood:
    """Gaussian noise with a LogNormal(-4, 1) prior on the standardised-target noise variance."""
    prior = LogNormalPrior(loc=-4.0, scale=1.0)
    likelihood = GaussianLikelihood(noise_prior=prior, noise_constraint=GreaterThan(1e-6))
    likelihood.noise = prior.mode
    return likelihood




class GPOptions(ModelOptions):
    """Options of `model: {kind: gp}`."""

    kernel: Literal["matern", "rbf", "tanimoto"] = Field(
        "matern", description="ARD Matern-5/2, ARD RBF, or Tanimoto for count fingerprints"
    )
    mean: Literal["constant", "linear"] = Field(
        "constant", description="prior mean: constant, or a learned linear trend in the scaled inputs"
    )
    fit_iters: int = Field(60, ge=1, description="Adam steps on a fresh fit")
    warm_iters: int = Field(15, ge=1, description="Adam steps when refitting from the previous round")
    lr: Positive = Field(0.1, description="Adam step size")
    warm_start: bool = Field(True, description="start each round's fit from the previous round's hyperparameters")
    batch_rows: int = Field(PREDICT_BATCH_ROWS, ge=1, description="prediction batch (memory grows as batch_rows x n_train)")


@register_model("gp", GPOptions)
class GPSurrogate(ColumnSelection):
    """Exact GP regression on one feature block.

    Options (the spec's `model:` keys): kernel ("matern" ARD Matern-5/2, "rbf" ARD RBF, or
    "tanimoto" for count fingerprints), columns (feature block name, e.g. "morgan"; default all
    columns), fit_iters (Adam steps on a fresh fit), warm_iters (steps when refitting from the
    previous round's hyperparameters), lr (Adam step size), warm_start (reuse the previous fit),
    batch_rows (prediction batch size; memory grows as batch_rows x n_train), mean ("constant",
    or "linear": a learned linear trend in the scaled inputs, so the posterior extrapolates along
    a physical descriptor instead of reverting to a constant far from the data).
    """

    def __init__(
        self,
        kernel: str = "matern",
        mean: str = "constant",
        columns: str | None = None,
        fit_iters: int = 60,
        warm_iters: int = 15,
        lr: float = 0.1,
        warm_start: bool = True,
        batch_rows: int = PREDICT_BATCH_ROWS,
    ) -> None:
        vars(self).update(check_options(GPOptions, locals()))
        self.device = choose_device()
        self._model: ExactGPModel | None = None
        self._cache: PosteriorCache | None = None
        self._final_loss = float("nan")

    # ----- building blocks DKL overrides -------------------------------------------------------
    def _feature_scaler(self, X: np.ndarray) -> Scaler:
        return Scaler.identity(X.shape[1]) if self.kernel == "tanimoto" else Scaler.fit(X)

    def _build(self, train_x: torch.Tensor, train_y: torch.Tensor) -> ExactGPModel:
        n_dims = train_x.shape[1]
        mean = gpytorch.means.LinearMean(n_dims) if self.mean == "linear" else None
        return ExactGPModel(train_x, train_y, make_likelihood(), make_kernel(self.kernel, n_dims), mean_module=mean)

    def _check_features(self, X: np.ndarray) -> None:
        if self.kernel == "tanimoto" and (X < 0).any():
            raise DataError("the tanimoto kernel needs non-negative count features; choose `columns` of a fingerprint block")

    # ----- Surrogate protocol ------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> "GPSurrogate":
        """Fit on measured rows X (n, d) and targets y (n,) by exact marginal likelihood."""
        X, y = check_training_data(X, y)
        self._n_pool_columns = X.shape[1]
        X = self._select(X)
        self._check_features(X)
        reuse = self.warm_start and self._model is not None and self._model.train_inputs[0].shape[1] == X.shape[1]
        if not reuse:  # a warm start keeps the input scaling its weights were learned under
            self._x_scaler = self._feature_scaler(X)
        self._y_scaler = Scaler.fit(y)
        train_x = self._tensor(self._x_scaler.apply(X))
        train_y = self._tensor(self._y_scaler.apply(y))
        if reuse:
            self._model.set_train_data(train_x, train_y, strict=False)
        else:
            self._model = self._build(train_x, train_y).to(device=self.device, dtype=torch.float64)
        self._optimise(self.warm_iters if reuse else self.fit_iters)
        self._cache = self._posterior_cache()
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and latent variance (target units, noise excluded), in row batches."""
        model, cache = self._fitted()
        X = self._checked(X)
        mean = np.empty(len(X))
        variance = np.empty(len(X))
        levels = self._pool_levels(X)
        with torch.no_grad():
            if levels is not None:
                return self._predict_counts(levels, mean, variance)
            for rows in row_batches(len(X), self.batch_rows):
                z = model.latent(self._inputs(X[rows]))
                cross = model.covar_module(z, cache.train_latent).to_dense()
                prior_var = model.covar_module(z, diag=True)
                mean[rows] = (model.mean_module(z) + cross @ cache.mean_weights).cpu().numpy()
                explained = (cross.float() @ cache.root_inverse_f32).square().sum(-1).double()
                variance[rows] = (prior_var - explained).clamp_min(1e-10).cpu().numpy()
        return self._unscale(mean, variance)

    def _pool_levels(self, X_block: np.ndarray) -> CountLevels | None:
        """The cached count levels of a large block for the plain Tanimoto GP (constant mean, raw
        counts; DKL has no Tanimoto kernel), else None: the general path serves every other case."""
        if self.kernel != "tanimoto" or self.mean != "constant":
            return None
        return pool_count_levels(X_block, self.batch_rows)

    def _predict_counts(self, levels: CountLevels, mean: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`predict` on a pool's cached count levels: per batch one sparse product gives the
        intersections with the training rows, so no batch is copied, scaled or scanned again.
        The prior variance is the outputscale (a Tanimoto self-similarity is 1)."""
        model, cache = self._fitted()
        train = cache.train_latent.cpu().numpy()
        train_levels = levels.train_indicators(train)
        train_totals = torch.as_tensor(train.sum(axis=1), dtype=torch.float32)
        outputscale = float(model.covar_module.outputscale.item())
        constant = float(model.mean_module.constant.item())
        weights = cache.mean_weights.cpu()
        for batch, rows in enumerate(row_batches(len(mean), self.batch_rows)):
            intersection = levels.batches[batch] @ train_levels
            total = torch.as_tensor(levels.totals[rows], dtype=torch.float32).unsqueeze(-1) + train_totals
            cross = outputscale * tanimoto_from_intersection(intersection, total)
            mean[rows] = (constant + cross.double() @ weights).numpy()
            explained = (cross @ cache.root_inverse_f32.cpu()).square().sum(-1).double()
            variance[rows] = (outputscale - explained).clamp_min(1e-10).numpy()
        return self._unscale(mean, variance)

    def predict_joint(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint posterior mean (k,) and latent covariance (k, k) over a small candidate set."""
        model, cache = self._fitted()
        with torch.no_grad():
            z = model.latent(self._inputs(self._checked(X)))
            cross = model.covar_module(z, cache.train_latent).to_dense()
            reduced = cross @ cache.root_inverse
            cov = model.covar_module(z).to_dense() - reduced @ reduced.T
            mean = model.mean_module(z) + cross @ cache.mean_weights
        cov = 0.5 * (cov + cov.T)
        scale = float(self._y_scaler.scale)
        return mean.cpu().numpy() * scale + float(self._y_scaler.shift), cov.cpu().numpy() * scale**2

    def get_state(self) -> bytes:
        """What a warm start carries to the next fit: the fitted parameters (network weights
        included, for DKL) and the input scaling, as safetensors bytes (exact float64)."""
        model, _ = self._fitted()
        # one copy per entry: kernels may share a buffer (e.g. active_dims), which safetensors refuses
        tensors = {f"model.{name}": value.detach().cpu().clone(memory_format=torch.contiguous_format)
                   for name, value in model.state_dict().items()}
        tensors["x_shift"] = torch.as_tensor(np.asarray(self._x_scaler.shift, dtype=np.float64))
        tensors["x_scale"] = torch.as_tensor(np.asarray(self._x_scaler.scale, dtype=np.float64))
        return safetensors.torch.save(tensors)

    def set_state(self, state: bytes) -> None:
        """Restore `get_state()`'s output, so the next fit warm-starts exactly as it would have
        in the process that saved it (used when a run resumes)."""
        tensors = safetensors.torch.load(state)
        shift, scale = tensors.pop("x_shift").numpy(), tensors.pop("x_scale").numpy()
        self._x_scaler = Scaler(shift=shift, scale=scale)
        placeholder_x = torch.zeros(2, len(shift), dtype=torch.float64)
        self._model = self._build(placeholder_x, torch.zeros(2, dtype=torch.float64)).to(device=self.device, dtype=torch.float64)
        self._model.load_state_dict({name.removeprefix("model."): value for name, value in tensors.items()})
        self._cache = None

    def hyperparameters(self) -> dict[str, float]:
        """Fitted hyperparameters, recorded in the run store each round.

        Returns noise (observation noise variance, target units squared), outputscale and
        mean_constant (standardised target units), neg_mll (final training loss, negative marginal
        log likelihood per point) and, for kernels with lengthscales, lengthscale_min / _median /
        _max (standardised input units).
        """
        model, _ = self._fitted()
        kernel = model.covar_module
        params = {
            "noise": float(model.likelihood.noise.item()) * float(self._y_scaler.scale) ** 2,
            "outputscale": float(kernel.outputscale.item()),
            "mean_constant": float((model.mean_module.bias if self.mean == "linear" else model.mean_module.constant).item()),
            "neg_mll": self._final_loss,
        }
        base = kernel.base_kernel
        if base.has_lengthscale:
            lengthscale = base.lengthscale.detach().cpu().numpy().ravel()
            params |= {
                "lengthscale_min": float(lengthscale.min()),
                "lengthscale_median": float(np.median(lengthscale)),
                "lengthscale_max": float(lengthscale.max()),
            }
        return params

    # ----- internals ---------------------------------------------------------------------------
    def _tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=torch.float64, device=self.device)

    def _fitted(self) -> tuple[ExactGPModel, PosteriorCache]:
        if self._model is None or self._cache is None:
            raise RuntimeError("call fit() before predicting")
        return self._model, self._cache

    def _checked(self, X: np.ndarray) -> np.ndarray:
        """The model's column block of X (a view), after checking the pool's column count."""
        return self._select(check_prediction_input(X, self._n_pool_columns))

    def _inputs(self, X_block: np.ndarray) -> torch.Tensor:
        """Scaled float64 tensor of a batch of rows; scaling per batch keeps memory bounded."""
        return self._tensor(self._x_scaler.apply(X_block))

    def _unscale(self, mean: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = float(self._y_scaler.scale)
        return mean * scale + float(self._y_scaler.shift), variance * scale**2

    def _optimise(self, iterations: int) -> None:
        """Maximise the exact marginal likelihood (priors included) with Adam."""
        model = self._model
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        optimiser = self._optimiser(model)
        train_x, train_y = model.train_inputs[0], model.train_targets
        model.train()
        for _ in range(iterations):
            optimiser.zero_grad()
            loss = -mll(model(train_x), train_y)
            loss.backward()
            optimiser.step()
        self._final_loss = float(loss.item())
        model.eval()

    def _optimiser(self, model: ExactGPModel) -> torch.optim.Optimizer:
        """The optimiser `_optimise` uses: Adam over every parameter at `lr` (DKL adds groups)."""
        return torch.optim.Adam(model.parameters(), lr=self.lr)

    def _posterior_cache(self) -> PosteriorCache:
        model = self._model
        train_x, train_y = model.train_inputs[0], model.train_targets
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(EXACT_SOLVE_UP_TO):
            prior = model.forward(train_x)
            noisy_cov = model.likelihood(prior).lazy_covariance_matrix
            residual = (train_y - prior.mean).unsqueeze(-1)
            root_inverse = noisy_cov.root_inv_decomposition().root.to_dense()
            return PosteriorCache(
                train_latent=model.latent(train_x),
                mean_weights=noisy_cov.solve(residual).squeeze(-1),
                root_inverse=root_inverse,
                root_inverse_f32=root_inverse.float(),
            )
