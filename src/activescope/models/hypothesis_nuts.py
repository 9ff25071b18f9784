"""Fully Bayesian structured GP by NUTS in NumPyro (the `inference: nuts` mode of `hypothesis`).

Why NumPyro: its NUTS is compiled by JAX (XLA), so one GP fit on 500 points takes seconds on a
CPU where Pyro's pure-PyTorch NUTS takes minutes; gpax, the reference implementation of
hypothesis learning, uses it too. Laws are evaluated with the same parsed expression as the
torch MAP mode (`law.jax_ops`).

Training data are padded to a multiple of PAD_ROWS with masked rows (their kernel block is the
identity and their residual zero, so they add a constant to the log likelihood), so rounds that
add a few points reuse one compiled sampler instead of recompiling for every new size.

With `nuts_kernel: map` (empirical Bayes) the residual kernel and noise come from the MAP fit and
stay fixed: the training covariance is factorised once, each leapfrog step costs one triangular
solve (O(n^2)) instead of a Cholesky factorisation and its gradient (O(n^3)), and the chains start
at the MAP law parameters. The posterior then covers the law parameters only; the kernel's own
uncertainty is left out, which matters little once a few hundred points pin it down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.errors import SamplingError, SpecError
from ._torch import row_batches

if TYPE_CHECKING:
    from .hypothesis import HypothesisSurrogate

try:
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.diagnostics import summary as mcmc_summary
    from numpyro.infer import MCMC, NUTS, init_to_median
except ImportError:  # pragma: no cover - exercised only without the extra
    raise SpecError(
        "model.inference: nuts needs NumPyro and JAX; install them with pip install 'activescope[hypothesis]'"
    ) from None

numpyro.enable_x64()

PAD_ROWS = 16
"""Training rows are padded to a multiple of this, so one compiled sampler serves many rounds."""
PREDICT_ELEMENTS = 1 << 23
"""Cross-covariance elements (draws x batch rows x training rows) per prediction batch (64 MiB)."""
RHAT_LIMIT = 1.1
CHAIN_METHOD = "vectorized"
"""Chains run vectorised on one device (one compiled program, no per-chain dispatch)."""
JITTER = 1e-6


def _rbf(a: Any, b: Any, lengthscale: Any, outputscale: Any) -> Any:
    d2 = jnp.sum(jnp.square((a[:, None, :] - b[None, :, :]) / lengthscale), axis=-1)
    return outputscale * jnp.exp(-0.5 * d2)


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    """Pad rows to n by repeating the first row (keeps the law finite on padded rows)."""
    extra = n - len(values)
    return np.concatenate([values, np.repeat(values[:1], extra, axis=0)]) if extra else values


@dataclass
class NutsFit:
    """Posterior draws of one NUTS fit and what predictions need (standardised units)."""

    owner: "HypothesisSurrogate"
    samples: dict[str, np.ndarray]  # name -> (chains, draws, ...)
    stats: dict[str, dict[str, Any]]
    restarts: int
    divergent: float
    train: dict[str, Any]
    draws: dict[str, Any]  # thinned draws used by predict: name -> (S, ...)
    chol: Any  # (S, n_pad, n_pad); one (n_pad, n_pad) factor with a fixed kernel
    alpha: Any  # (S, n_pad)
    fixed: dict[str, Any] | None = None  # MAP kernel hyperparameters (nuts_kernel: map)

    @classmethod
    def run(
        cls, owner: "HypothesisSurrogate", xz: np.ndarray, xd: np.ndarray, ys: np.ndarray, fixed: dict[str, Any] | None = None
    ) -> "NutsFit":
        """Sample the posterior; restart with a doubled warm-up and a new seed while R-hat > 1.1,
        and raise SamplingError when it still has not converged or diverges too often. `fixed`
        (law parameters, lengthscale, outputscale, noise of a MAP fit) fixes the kernel and
        starts the chains at the MAP law."""
        law = owner._law
        n = len(ys)
        n_pad = PAD_ROWS * math.ceil(n / PAD_ROWS)
        mask = np.r_[np.ones(n), np.zeros(n_pad - n)]
        train = {
            "xz": jnp.asarray(_pad(xz, n_pad)),
            "xd": jnp.asarray(_pad(xd, n_pad)),
            "y": jnp.asarray(np.r_[ys, np.zeros(n_pad - n)]),
            "mask": jnp.asarray(mask),
            "y_shift": float(owner._y_scaler.shift),
            "y_scale": float(owner._y_scaler.scale),
        }
        compiled = _compiled(owner, xz.shape[1])
        args: tuple[Any, ...] = (train["xz"], train["xd"], train["y"], train["mask"], train["y_shift"], train["y_scale"])
        model, init_params = compiled["model"], None
        if fixed is not None:
            fixed = {k: jnp.asarray(v) for k, v in fixed.items()}
            train["chol"] = _train_factor(train, fixed)
            args = (train["xd"], train["y"], train["mask"], train["y_shift"], train["y_scale"], train["chol"])
            model = compiled["law_model"]
            init_params = _chain_starts(owner, fixed)
        warmup = owner.num_warmup
        for attempt in range(owner.max_restarts + 1):
            if (fixed is None, warmup, attempt) not in compiled:
                compiled[fixed is None, warmup, attempt] = MCMC(
                    NUTS(model, init_strategy=init_to_median(num_samples=15),
                         target_accept_prob=0.8 if attempt == 0 else 0.9, max_tree_depth=owner.max_tree_depth),
                    num_warmup=warmup,
                    num_samples=owner.num_samples,
                    num_chains=owner.num_chains,
                    chain_method=CHAIN_METHOD,
                    progress_bar=False,
                    jit_model_args=True,
                )  # fmt: skip
            mcmc = compiled[fixed is None, warmup, attempt]
            key = jax.random.PRNGKey(owner.seed * 1009 + attempt)
            try:
                mcmc.run(key, *args, extra_fields=("diverging",), init_params=init_params)
            except RuntimeError as err:  # e.g. no finite likelihood anywhere the sampler may start
                raise SamplingError(
                    f"NUTS could not start for law {law.expression!r} ({str(err).splitlines()[0]}); is the law "
                    "defined (no log or sqrt of negative values) on the data for parameters its priors allow?"
                ) from None
            samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
            stats = mcmc_summary(samples, group_by_chain=True)
            worst = max(float(np.nanmax(np.atleast_1d(s["r_hat"]))) for s in stats.values())
            divergent = float(np.mean(np.asarray(mcmc.get_extra_fields()["diverging"])))
            if worst <= RHAT_LIMIT and divergent <= owner.max_divergent:
                break
            warmup *= 2
        else:
            if divergent > owner.max_divergent:
                raise SamplingError(
                    f"NUTS diverged in {divergent:.0%} of transitions (limit {owner.max_divergent:.0%}) for law "
                    f"{law.expression!r} after {owner.max_restarts + 1} runs; check its priors and units (target_scale)"
                )
            raise SamplingError(
                f"NUTS did not converge for law {law.expression!r}: max R-hat {worst:.2f} > {RHAT_LIMIT} after "
                f"{owner.max_restarts + 1} runs; raise num_warmup or tighten the priors"
            )
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in samples.items()}
        total = len(next(iter(flat.values())))
        keep = np.linspace(0, total - 1, min(owner.predict_samples, total)).astype(int)
        draws = {k: jnp.asarray(v[keep]) for k, v in flat.items()}
        if fixed is not None:
            alpha = compiled["law_solves"](draws, train)
            return cls(owner, samples, stats, attempt, divergent, train, draws, train["chol"], alpha, fixed)
        chol, alpha = compiled["solves"](draws, train)
        return cls(owner, samples, stats, attempt, divergent, train, draws, chol, alpha)

    def summary(self, parameters: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """Posterior mean, sd, 5 % and 95 % quantiles, split R-hat and ESS of each law parameter."""
        out = {}
        for p in parameters:
            s = self.stats[p]
            out[p] = {"mean": float(s["mean"]), "sd": float(s["std"]), "q5": float(s["5.0%"]), "q95": float(s["95.0%"]),
                      "r_hat": float(s["r_hat"]), "ess": float(s["n_eff"])}  # fmt: skip
        return out

    def diagnostics(self, y_scale: float) -> dict[str, float]:
        """Largest R-hat and smallest ESS over every sampled quantity, restarts, divergent
        fraction, and the posterior-mean noise variance (target units squared)."""
        r_hat = max(float(np.nanmax(np.atleast_1d(s["r_hat"]))) for s in self.stats.values())
        ess = min(float(np.nanmin(np.atleast_1d(s["n_eff"]))) for s in self.stats.values())
        noise = float(np.mean(self.fixed["noise"] if self.fixed is not None else self.samples["noise"])) * y_scale**2
        return {"r_hat_max": r_hat, "ess_min": ess, "restarts": float(self.restarts), "divergent": self.divergent, "noise": noise}

    def predict(self, xz: np.ndarray, xd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and latent variance (standardised units) averaged over the draws."""
        n_draws, n_pad = self.alpha.shape
        if self.fixed is None:
            rows = max(1, PREDICT_ELEMENTS // (n_draws * n_pad))
            step, draws = self.owner._nuts_compiled["predict"], self.draws
        else:  # one cross-covariance block serves every draw
            rows = max(1, PREDICT_ELEMENTS // n_pad)
            step, draws = self.owner._nuts_compiled["law_predict"], (self.draws, self.fixed)
        mean, variance = np.empty(len(xz)), np.empty(len(xz))
        for batch in row_batches(len(xz), rows):
            size = batch.stop - batch.start
            m, v = step(draws, self.train, self.chol, self.alpha, jnp.asarray(_pad(xz[batch], rows)), jnp.asarray(_pad(xd[batch], rows)))
            mean[batch], variance[batch] = np.asarray(m)[:size], np.asarray(v)[:size]
        return mean, variance


def _compiled(owner: "HypothesisSurrogate", n_dims: int) -> dict[Any, Any]:
    """The owner's compiled model, samplers and solves, built once and reused by every round."""
    if getattr(owner, "_nuts_compiled", None) is None:
        owner._nuts_compiled = {
            "model": _model_fn(owner, n_dims), "solves": _train_solves(owner), "predict": _predict_fn(owner),
            "law_model": _law_model_fn(owner), "law_solves": _law_solves(owner), "law_predict": _law_predict_fn(owner),
        }  # fmt: skip
    return owner._nuts_compiled


def _law_mean(owner: "HypothesisSurrogate", xd: Any, theta: dict[str, Any], y_shift: Any, y_scale: Any) -> Any:
    """The law at raw descriptors xd (rows, d) with parameter values theta, standardised."""
    from .law import jax_ops

    env = {name: xd[:, col] for name, col in owner._columns.items()} | {p: theta[p] for p in owner._law.parameters}
    value = jnp.asarray(owner._law(jax_ops(), env)) * owner.target_scale
    return jnp.broadcast_to((value - y_shift) / y_scale, xd.shape[:1])


def _model_fn(owner: "HypothesisSurrogate", n_dims: int) -> Any:
    """The NumPyro model: law parameters from their priors, ARD RBF residual GP, Gaussian noise.
    GP hyperpriors match the MAP mode's (dimension-scaled LogNormal lengthscales, LogNormal(-4, 1)
    noise, standardised units) plus LogNormal(0, 1) on the outputscale."""
    priors = {p: owner._law.priors[p].numpyro() for p in owner._law.parameters}
    ls_loc = math.sqrt(2) + 0.5 * math.log(n_dims)

    def model(xz: Any, xd: Any, y: Any, mask: Any, y_shift: float, y_scale: float) -> None:
        theta = {p: numpyro.sample(p, prior) for p, prior in priors.items()}
        lengthscale = numpyro.sample("lengthscale", dist.LogNormal(ls_loc, math.sqrt(3)).expand([n_dims]).to_event(1))
        outputscale = numpyro.sample("outputscale", dist.LogNormal(0.0, 1.0))
        noise = numpyro.sample("noise", dist.LogNormal(-4.0, 1.0))
        k = _rbf(xz, xz, lengthscale, outputscale) * (mask[:, None] * mask[None, :])
        k = k + jnp.diag(mask * noise + (1.0 - mask) + JITTER)
        residual = (y - _law_mean(owner, xd, theta, y_shift, y_scale)) * mask
        chol = jnp.linalg.cholesky(k)
        white = jax.scipy.linalg.solve_triangular(chol, residual, lower=True)
        numpyro.factor("y", -0.5 * jnp.sum(white**2) - jnp.sum(jnp.log(jnp.diag(chol))))

    return model


def _train_solves(owner: "HypothesisSurrogate") -> Any:
    """Compiled, per draw: Cholesky factor of the noisy training covariance and K^-1 (y - m)."""

    def one(theta: dict[str, Any], train: dict[str, Any]) -> tuple[Any, Any]:
        mask = train["mask"]
        k = _rbf(train["xz"], train["xz"], theta["lengthscale"], theta["outputscale"]) * (mask[:, None] * mask[None, :])
        k = k + jnp.diag(mask * theta["noise"] + (1.0 - mask) + JITTER)
        chol = jnp.linalg.cholesky(k)
        residual = (train["y"] - _law_mean(owner, train["xd"], theta, train["y_shift"], train["y_scale"])) * mask
        return chol, jax.scipy.linalg.cho_solve((chol, True), residual)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def _predict_fn(owner: "HypothesisSurrogate") -> Any:
    """Compiled batch prediction: mixture mean and variance over the posterior draws."""

    def one(theta: dict[str, Any], train: dict[str, Any], chol: Any, alpha: Any, xz: Any, xd: Any) -> tuple[Any, Any]:
        cross = _rbf(xz, train["xz"], theta["lengthscale"], theta["outputscale"]) * train["mask"][None, :]
        mean = _law_mean(owner, xd, theta, train["y_shift"], train["y_scale"]) + cross @ alpha
        white = jax.scipy.linalg.solve_triangular(chol, cross.T, lower=True)
        return mean, jnp.maximum(theta["outputscale"] - jnp.sum(white**2, axis=0), 1e-10)

    def mixture(draws: dict[str, Any], train: dict[str, Any], chol: Any, alpha: Any, xz: Any, xd: Any) -> tuple[Any, Any]:
        means, variances = jax.vmap(one, in_axes=(0, None, 0, 0, None, None))(draws, train, chol, alpha, xz, xd)
        return means.mean(0), variances.mean(0) + means.var(0)

    return jax.jit(mixture)


def _chain_starts(owner: "HypothesisSurrogate", values: dict[str, Any]) -> dict[str, Any]:
    """Per-chain starting points near the MAP law parameters, in NumPyro's unconstrained space
    (a 1 % relative jitter keeps the chains distinct, so split R-hat still means something)."""
    rng = np.random.default_rng(owner.seed)
    starts = {}
    for p in owner._law.parameters:
        free = float(dist.biject_to(owner._law.priors[p].numpyro().support).inv(values[p]))
        starts[p] = jnp.asarray(free + 0.01 * (abs(free) + 1e-6) * rng.standard_normal(owner.num_chains))
    return starts


def _train_factor(train: dict[str, Any], kernel: dict[str, Any]) -> Any:
    """Cholesky factor of the noisy training covariance under fixed kernel hyperparameters."""
    mask = train["mask"]
    k = _rbf(train["xz"], train["xz"], kernel["lengthscale"], kernel["outputscale"]) * (mask[:, None] * mask[None, :])
    return jnp.linalg.cholesky(k + jnp.diag(mask * kernel["noise"] + (1.0 - mask) + JITTER))


def _law_model_fn(owner: "HypothesisSurrogate") -> Any:
    """The NumPyro model with the kernel fixed: law parameters from their priors, and the GP
    marginal likelihood of the residual against one precomputed Cholesky factor (its log
    determinant is a constant and left out)."""
    priors = {p: owner._law.priors[p].numpyro() for p in owner._law.parameters}

    def model(xd: Any, y: Any, mask: Any, y_shift: float, y_scale: float, chol: Any) -> None:
        theta = {p: numpyro.sample(p, prior) for p, prior in priors.items()}
        residual = (y - _law_mean(owner, xd, theta, y_shift, y_scale)) * mask
        white = jax.scipy.linalg.solve_triangular(chol, residual, lower=True)
        numpyro.factor("y", -0.5 * jnp.sum(white**2))

    return model


def _law_solves(owner: "HypothesisSurrogate") -> Any:
    """Compiled, per draw of the law parameters: K^-1 (y - m) with the fixed factor."""

    def one(theta: dict[str, Any], train: dict[str, Any]) -> Any:
        residual = (train["y"] - _law_mean(owner, train["xd"], theta, train["y_shift"], train["y_scale"])) * train["mask"]
        return jax.scipy.linalg.cho_solve((train["chol"], True), residual)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def _law_predict_fn(owner: "HypothesisSurrogate") -> Any:
    """Compiled batch prediction with a fixed kernel: the GP variance is shared by every draw,
    the mean differs by the law and its residual weights; mixture over the draws."""

    def mixture(draws: tuple[dict[str, Any], dict[str, Any]], train: dict[str, Any], chol: Any, alpha: Any, xz: Any, xd: Any) -> tuple[Any, Any]:
        theta, kernel = draws
        cross = _rbf(xz, train["xz"], kernel["lengthscale"], kernel["outputscale"]) * train["mask"][None, :]
        laws = jax.vmap(lambda t: _law_mean(owner, xd, t, train["y_shift"], train["y_scale"]))(theta)
        means = laws + alpha @ cross.T
        white = jax.scipy.linalg.solve_triangular(chol, cross.T, lower=True)
        variance = jnp.maximum(kernel["outputscale"] - jnp.sum(white**2, axis=0), 1e-10)
        return means.mean(0), variance + means.var(0)

    return jax.jit(mixture)
