"""Deep kernel learning surrogate (`model: {kind: dkl}`).

An MLP maps the features to a low-dimensional latent space (tanh-bounded to (-1, 1), so a 2-D
latent can be drawn as a map), and a GP with a scaled ARD RBF/Matern kernel works on that latent.
Network weights and GP hyperparameters are trained jointly on the exact marginal likelihood with
Adam. Everything else (scaling, warm starts, batched and joint prediction) is GPSurrogate's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from pydantic import Field

from ..engine.registry import register_model
from ._torch import PREDICT_BATCH_ROWS, row_batches
from .base import LayerWidths, ModelOptions, Positive, check_options
from .gp import ExactGPModel, GPSurrogate, make_likelihood


def make_extractor(n_inputs: int, hidden: Sequence[int], latent_dim: int) -> torch.nn.Sequential:
    """MLP n_inputs -> hidden... -> latent_dim with SiLU activations and a tanh-bounded output."""
    widths = [n_inputs, *hidden]
    layers: list[torch.nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(width_in, width_out), torch.nn.SiLU()]
    layers += [torch.nn.Linear(widths[-1], latent_dim), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers)




class DKLOptions(ModelOptions):
    """Options of `model: {kind: dkl}`."""

    hidden: LayerWidths = (64, 32)
    latent_dim: int = Field(2, ge=1, description="dimension of the learned latent space the GP works on")
    kernel: Literal["rbf", "matern"] = Field("rbf", description="GP kernel on the latent space")
    fit_iters: int = Field(200, ge=1, description="Adam steps on a fresh fit")
    warm_iters: int = Field(30, ge=1, description="Adam steps when warm-starting from the previous round")
    lr: Positive = Field(0.01, description="Adam step size")
    warm_start: bool = Field(True, description="start each round's fit from the previous round's weights")
    seed: int = Field(0, description="weight initialisation seed (fits are deterministic on CPU)")
    batch_rows: int = Field(PREDICT_BATCH_ROWS, ge=1, description="prediction batch size")


@register_model("dkl", DKLOptions)
class DKLSurrogate(GPSurrogate):
    """GP on a learned latent space.

    Options: hidden (MLP widths, default [64, 32]), latent_dim (default 2), kernel ("rbf" or
    "matern" on the latent), columns (feature block, default all), fit_iters (Adam steps on a
    fresh fit), warm_iters (steps when warm-starting from the previous round's weights), lr,
    warm_start (default true), seed (weight initialisation; fits are deterministic on CPU),
    batch_rows (prediction batch size).
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64, 32),
        latent_dim: int = 2,
        kernel: str = "rbf",
        columns: str | None = None,
        fit_iters: int = 200,
        warm_iters: int = 30,
        lr: float = 0.01,
        warm_start: bool = True,
        seed: int = 0,
        batch_rows: int = PREDICT_BATCH_ROWS,
    ) -> None:
        options = check_options(DKLOptions, locals())
        super().__init__(
            kernel="rbf", columns=columns, fit_iters=fit_iters, warm_iters=warm_iters, lr=lr, warm_start=warm_start, batch_rows=batch_rows
        )
        vars(self).update(options)

    def _build(self, train_x: torch.Tensor, train_y: torch.Tensor) -> ExactGPModel:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            extractor = make_extractor(train_x.shape[1], self.hidden, self.latent_dim)
        base = RBFKernel if self.kernel == "rbf" else MaternKernel
        kernel = ScaleKernel(base(ard_num_dims=self.latent_dim))
        return ExactGPModel(train_x, train_y, make_likelihood(), kernel, feature_extractor=extractor)

    def embed(self, X: np.ndarray) -> np.ndarray:
        """Latent coordinates (m, latent_dim) of the rows of X, each in (-1, 1)."""
        model, _ = self._fitted()
        X = self._checked(X)
        latent = np.empty((len(X), self.latent_dim))
        with torch.no_grad():
            for rows in row_batches(len(X), self.batch_rows):
                latent[rows] = model.latent(self._inputs(X[rows])).cpu().numpy()
        return latent

    def hyperparameters(self) -> dict[str, float]:
        """GPSurrogate's hyperparameters, with one `lengthscale_<axis>` per latent dimension (latent
        units, in (-1, 1)) instead of the min / median / max summary."""
        params = super().hyperparameters()
        return {key: value for key, value in params.items() if not key.startswith("lengthscale_")} | {
            f"lengthscale_{axis}": float(value)
            for axis, value in enumerate(self._model.covar_module.base_kernel.lengthscale.detach().cpu().numpy().ravel())
        }
