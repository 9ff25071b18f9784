"""Deep kernel learning surrogate (`model: {kind: dkl}`).

A feature extractor maps the features to a low-dimensional latent space (tanh-bounded to
(-1, 1), so a 2-D latent can be drawn as a map), and a GP with a scaled ARD RBF/Matern kernel
works on that latent. The extractor is an MLP, or (`extractor: conv`) a small convolutional
network for image-patch features (`probe_grid`), which reads the flattened patch as a square
image. `extractor: pretrained` starts from a network trained elsewhere, named by `checkpoint`
(e.g. an im2spec patch encoder from `activescope.microscopy.imspec`), found through the
entry-point group ``activescope.extractors`` under the kind its card names, followed by a
small trainable MLP to the latent; `freeze` keeps the pretrained weights fixed, and the
features reach it unscaled (it was trained on them as they are). `extractor: residual` is a
distance-preserving network (spectrally normalised residual blocks, as in SNGP/DUE): it warps the
inputs without folding distant points together, so candidates unlike anything measured keep a
high variance, which is what a tanh-bounded 2-D latent loses on small data. With `raw_kernel`
the GP kernel is the latent kernel plus a scaled ARD kernel on the (standardised) input features
themselves, so that where the network has learned nothing useful
the model is still a plain GP. Network weights (with optional weight decay) and GP
hyperparameters are trained jointly on the exact marginal likelihood with Adam. Everything else
(scaling, warm starts, batched and joint prediction) is GPSurrogate's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel
from linear_operator.utils.errors import NanError, NotPSDError
from pydantic import Field
from safetensors import SafetensorError, safe_open

from ..engine.errors import SpecError
from ..engine.registry import Registry, register_model
from ._torch import PREDICT_BATCH_ROWS, Scaler, row_batches
from .base import LayerWidths, ModelOptions, Positive, check_options
from .gp import ExactGPModel, GPSurrogate, make_kernel, make_likelihood

EXTRACTORS: Registry = Registry("pretrained extractor kind", "activescope.extractors")
"""Loaders `load(path, n_inputs) -> torch.nn.Module` of pretrained feature extractors, by the
kind a checkpoint's card names (the module has an `out_features` attribute)."""

RESIDUAL_COEFF = 0.9
"""Scale of each residual block of `extractor: residual` (SiLU's slope is at most 1.1, so each
block's Lipschitz constant stays below 1)."""

CONV_CHANNELS = 8
"""Channels of each of the conv extractor's two 3 x 3 convolutions."""


def make_extractor(n_inputs: int, hidden: Sequence[int], latent_dim: int) -> torch.nn.Sequential:
    """MLP n_inputs -> hidden... -> latent_dim with SiLU activations and a tanh-bounded output."""
    widths = [n_inputs, *hidden]
    layers: list[torch.nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(width_in, width_out), torch.nn.SiLU()]
    layers += [torch.nn.Linear(widths[-1], latent_dim), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers)


def make_conv_extractor(side: int, hidden: Sequence[int], latent_dim: int) -> torch.nn.Sequential:
    """CNN for flattened side x side patches: two 3 x 3 convolutions (CONV_CHANNELS channels,
    no padding, SiLU), then the MLP `make_extractor` builds on the flattened maps."""
    if side < 5:
        raise SpecError(f"model.extractor: conv needs patches of at least 5 x 5 pixels, got {side} x {side}")
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, side, side)),
        torch.nn.Conv2d(1, CONV_CHANNELS, 3), torch.nn.SiLU(),
        torch.nn.Conv2d(CONV_CHANNELS, CONV_CHANNELS, 3), torch.nn.SiLU(),
        torch.nn.Flatten(),
        make_extractor(CONV_CHANNELS * (side - 4) ** 2, hidden, latent_dim),
    )


class SpectralResidual(torch.nn.Module):
    """x -> x + c tanh(a1) g1(x) -> ... : residual blocks whose MLPs g (SiLU, spectrally
    normalised linear maps) have Lipschitz constant below 1, so the map is bi-Lipschitz: points
    far apart in the input stay far apart in the latent (no feature collapse), and the latent
    keeps the input's dimension. The gates a start at 0, so the model starts as a plain GP on
    the inputs and learns to warp them only as far as the marginal likelihood asks."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], blocks: int = 2, coeff: float = RESIDUAL_COEFF) -> None:
        super().__init__()
        sn = torch.nn.utils.parametrizations.spectral_norm
        width = hidden[0] if hidden else n_inputs
        self.coeff = coeff
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(sn(torch.nn.Linear(n_inputs, width)), torch.nn.SiLU(), sn(torch.nn.Linear(width, n_inputs)))
            for _ in range(blocks))
        self.gates = torch.nn.Parameter(torch.zeros(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) -> (n, d)."""
        for gate, block in zip(torch.tanh(self.gates), self.blocks):
            x = x + self.coeff * gate * block(x)
        return x


class WithInputs(torch.nn.Module):
    """Wraps an extractor so that its output is [inputs, latent]: the raw columns for the
    `raw_kernel` part, the latent ones for the latent kernel."""

    def __init__(self, extractor: torch.nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) inputs -> (n, d + latent_dim)."""
        return torch.cat([x, self.extractor(x)], dim=-1)


class DKLOptions(ModelOptions):
    """Options of `model: {kind: dkl}`."""

    hidden: LayerWidths = (64, 32)
    latent_dim: int = Field(2, ge=1, description="dimension of the learned latent space the GP works on")
    kernel: Literal["rbf", "matern"] = Field("rbf", description="GP kernel on the latent space")
    extractor: Literal["mlp", "conv", "pretrained", "residual"] = Field(
        "mlp", description="feature extractor: mlp, conv for square image-patch features (probe_grid), pretrained (see checkpoint), "
                           "or residual (distance-preserving; its latent keeps the input's dimension and latent_dim is not used)")
    checkpoint: str | None = Field(
        None, description="for extractor pretrained: a .safetensors checkpoint of a pretrained extractor, e.g. an im2spec model")
    freeze: bool = Field(True, description="for extractor pretrained: keep the pretrained weights fixed (false: fine-tune them)")
    patch: int | None = Field(
        None, ge=5, description="side of a square patch, pixels, for extractor conv (default: the square root of the column count)")
    raw_kernel: Literal["none", "matern", "rbf"] = Field(
        "none", description="add a scaled ARD kernel on the standardised input features to the latent kernel (none: latent only)")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty on the extractor weights (Adam weight decay)")
    fit_iters: int = Field(200, ge=1, description="Adam steps on a fresh fit")
    warm_iters: int = Field(30, ge=1, description="Adam steps when warm-starting from the previous round")
    lr: Positive = Field(0.01, description="Adam step size of the extractor weights")
    kernel_lr: Positive | None = Field(None, description="Adam step size of the GP hyperparameters (default: lr)")
    warm_start: bool = Field(True, description="start each round's fit from the previous round's weights")
    seed: int = Field(0, description="weight initialisation seed (fits are deterministic on CPU)")
    batch_rows: int = Field(PREDICT_BATCH_ROWS, ge=1, description="prediction batch size")


@register_model("dkl", DKLOptions)
class DKLSurrogate(GPSurrogate):
    """GP on a learned latent space.

    Options: hidden (MLP widths, default [64, 32]), latent_dim (default 2), kernel ("rbf" or
    "matern" on the latent), extractor ("mlp", "conv" for square patches of `patch` pixels, or
    "pretrained": the network in `checkpoint`, frozen unless `freeze` is false, or "residual":
    distance-preserving residual blocks of width hidden[0], latent = the input's dimension),
    raw_kernel ("none", or "matern"/"rbf": a kernel on the inputs added to the latent one),
    weight_decay (extractor weights), columns (feature block, default all), fit_iters (Adam
    steps on a fresh fit), warm_iters (steps when warm-starting from the previous round's
    weights), lr (extractor), kernel_lr (GP hyperparameters, default lr), warm_start (default
    true), seed (weight initialisation; fits are deterministic on CPU), batch_rows (prediction
    batch size).
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64, 32),
        latent_dim: int = 2,
        kernel: str = "rbf",
        extractor: str = "mlp",
        checkpoint: str | None = None,
        freeze: bool = True,
        patch: int | None = None,
        raw_kernel: str = "none",
        weight_decay: float = 0.0,
        columns: str | None = None,
        fit_iters: int = 200,
        warm_iters: int = 30,
        lr: float = 0.01,
        kernel_lr: float | None = None,
        warm_start: bool = True,
        seed: int = 0,
        batch_rows: int = PREDICT_BATCH_ROWS,
    ) -> None:
        options = check_options(DKLOptions, locals())
        if extractor == "residual" and raw_kernel != "none":
            raise SpecError("model.raw_kernel: extractor residual already works on the inputs themselves; leave raw_kernel at none")
        super().__init__(
            kernel="rbf", columns=columns, fit_iters=fit_iters, warm_iters=warm_iters, lr=lr, warm_start=warm_start, batch_rows=batch_rows
        )
        vars(self).update(options)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "DKLSurrogate":
        """GPSurrogate.fit; a warm start whose optimisation breaks down numerically (a kernel
        matrix that is no longer positive definite, or NaN) is discarded and the model is
        refitted from a fresh initialisation."""
        try:
            return super().fit(X, y)
        except (NotPSDError, NanError):
            if self._model is None:
                raise
            self._model = None
            return super().fit(X, y)

    def _build(self, train_x: torch.Tensor, train_y: torch.Tensor) -> ExactGPModel:
        n_inputs = train_x.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.extractor == "conv":
                side = self.patch or math.isqrt(n_inputs)
                if side * side != n_inputs:
                    raise SpecError(f"model.extractor: conv needs square patches; {n_inputs} columns are not "
                                    f"{side} x {side} (set model.patch or model.columns)")
                extractor = make_conv_extractor(side, self.hidden, self.latent_dim)
            elif self.extractor == "pretrained":
                extractor = self._pretrained(n_inputs)
            elif self.extractor == "residual":
                extractor = SpectralResidual(n_inputs, self.hidden)
            else:
                extractor = make_extractor(n_inputs, self.hidden, self.latent_dim)
        base = RBFKernel if self.kernel == "rbf" else MaternKernel
        if self.extractor == "residual":
            return ExactGPModel(train_x, train_y, make_likelihood(), make_kernel(self.kernel, n_inputs), feature_extractor=extractor)
        if self.raw_kernel == "none":
            kernel = ScaleKernel(base(ard_num_dims=self.latent_dim))
        else:
            latent_dims = tuple(range(n_inputs, n_inputs + self.latent_dim))
            kernel = ScaleKernel(base(ard_num_dims=self.latent_dim, active_dims=latent_dims)) + make_kernel(
                self.raw_kernel, n_inputs, active_dims=tuple(range(n_inputs)))
            extractor = WithInputs(extractor)
        return ExactGPModel(train_x, train_y, make_likelihood(), kernel, feature_extractor=extractor)

    def _feature_scaler(self, X: np.ndarray) -> Scaler:
        return Scaler.identity(X.shape[1]) if self.extractor == "pretrained" else super()._feature_scaler(X)

    def _pretrained(self, n_inputs: int) -> torch.nn.Sequential:
        """The checkpoint's network (frozen unless `freeze` is false) and an MLP to the latent."""
        if not self.checkpoint:
            raise SpecError("model.checkpoint: extractor pretrained needs the path of a pretrained extractor checkpoint")
        try:
            with safe_open(self.checkpoint, "pt") as handle:
                kind = json.loads((handle.metadata() or {})["activescope"]).get("kind")
        except (OSError, SafetensorError, KeyError, ValueError, AttributeError):
            raise SpecError(f"model.checkpoint: {self.checkpoint} is not an activescope checkpoint") from None
        if kind not in EXTRACTORS:
            raise SpecError(f"model.checkpoint: {self.checkpoint} holds a {kind or 'atom-finder'} model, which is "
                            f"no feature extractor; {EXTRACTORS.unknown(kind)}")
        network = EXTRACTORS.get(kind).factory(self.checkpoint, n_inputs)
        network.requires_grad_(not self.freeze)
        return torch.nn.Sequential(network, make_extractor(network.out_features, self.hidden, self.latent_dim))

    def _optimiser(self, model: ExactGPModel) -> torch.optim.Optimizer:
        """Adam with the extractor's weights (lr, weight_decay) and the GP hyperparameters
        (kernel_lr, no decay) in separate groups."""
        network = list(model.feature_extractor.parameters())
        ids = {id(p) for p in network}
        rest = [p for p in model.parameters() if id(p) not in ids]
        return torch.optim.Adam([
            {"params": network, "weight_decay": self.weight_decay},
            {"params": rest, "lr": self.kernel_lr or self.lr},
        ], lr=self.lr)

    def _latent_kernel(self) -> ScaleKernel:
        kernel = self._model.covar_module
        return kernel if self.raw_kernel == "none" else kernel.kernels[0]

    def embed(self, X: np.ndarray) -> np.ndarray:
        """Latent coordinates of the rows of X: (m, latent_dim), each in (-1, 1), or for the
        residual extractor (m, columns) in standardised input units."""
        model, _ = self._fitted()
        X = self._checked(X)
        width = X.shape[1] if self.extractor == "residual" else self.latent_dim
        latent = np.empty((len(X), width))
        with torch.no_grad():
            for rows in row_batches(len(X), self.batch_rows):
                latent[rows] = model.latent(self._inputs(X[rows]))[:, -width:].cpu().numpy()
        return latent

    def hyperparameters(self) -> dict[str, float]:
        """Noise, neg_mll and mean_constant as GPSurrogate's; outputscale and one
        `lengthscale_<axis>` per latent dimension (latent units, in (-1, 1)) of the latent kernel;
        with `raw_kernel`, raw_outputscale and raw_lengthscale_min / _median / _max
        (standardised input units). The residual extractor reports GPSurrogate's keys and
        `gate_<block>`, each block's residual weight tanh(a) in (-1, 1) (0: no warping)."""
        model, _ = self._fitted()
        if self.extractor == "residual":
            gates = torch.tanh(model.feature_extractor.gates).detach().cpu().numpy()
            return super().hyperparameters() | {f"gate_{k}": float(g) for k, g in enumerate(gates)}
        latent = self._latent_kernel()
        params = {
            "noise": float(model.likelihood.noise.item()) * float(self._y_scaler.scale) ** 2,
            "outputscale": float(latent.outputscale.item()),
            "mean_constant": float(model.mean_module.constant.item()),
            "neg_mll": self._final_loss,
        } | {
            f"lengthscale_{axis}": float(value)
            for axis, value in enumerate(latent.base_kernel.lengthscale.detach().cpu().numpy().ravel())
        }
        if self.raw_kernel != "none":
            raw = model.covar_module.kernels[1]
            lengthscale = raw.base_kernel.lengthscale.detach().cpu().numpy().ravel()
            params |= {"raw_outputscale": float(raw.outputscale.item()), "raw_lengthscale_min": float(lengthscale.min()),
                       "raw_lengthscale_median": float(np.median(lengthscale)), "raw_lengthscale_max": float(lengthscale.max())}
        return params
