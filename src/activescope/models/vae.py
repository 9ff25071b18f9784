"""A variational autoencoder for one-hot token sequences (SELFIES molecules, or any fixed-length
categorical sequence), split AtomAI style into a network, a trainer and a predictor.

- `SequenceVAE`: an MLP encoder from the flattened one-hot (length x tokens) to a Gaussian
  posterior over a `latent_dim` latent (2 for maps), and an MLP decoder from the latent to
  per-position token logits.
- `VAETrainer`: minimises the negative ELBO (summed per-position cross-entropy + beta x KL, with
  beta ramped linearly from 0 over the first `kl_warmup_epochs` to avoid posterior collapse)
  with Adam on shuffled mini-batches; records loss, KL and held-out reconstruction per epoch.
- `VAE`: the predictor: `embed` (posterior means), `decode`, `reconstruct`, `sample` from the
  prior, `reconstruction_accuracy`, and `save` / `load`.

A model file is one safetensors file (weights, never pickles) whose header holds a JSON card
`{"kind": "sequence_vae", ...}` with the architecture, the training record and the caller's
metadata (e.g. the SELFIES alphabet). Loading any other file, or a checkpoint of another kind,
raises a one-line DataError. The model knows nothing about chemistry: decoding tokens to
molecules is the caller's (`activescope.chem.selfies`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..engine.errors import DataError
from ._torch import row_batches
from .base import LayerWidths, Positive

KIND = "sequence_vae"
CARD_KEY = "activescope"
CARD_FORMAT = 1


class VAEConfig(BaseModel):
    """Architecture: sequences of `seq_len` positions over `n_tokens` tokens (`pad_index` is the
    padding token), a `latent_dim` Gaussian latent and MLP widths `hidden` (decoder mirrored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seq_len: int = Field(ge=1, description="positions per sequence")
    n_tokens: int = Field(ge=2, description="alphabet size")
    latent_dim: int = Field(2, ge=1, description="latent dimension (2 to draw maps)")
    hidden: LayerWidths = (512, 256)
    pad_index: int = Field(0, ge=0, description="index of the padding token (not counted in per-token accuracy)")


class TrainConfig(BaseModel):
    """Training: epochs, batch size, Adam step, final KL weight and its warm-up, seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: int = Field(20, ge=1, description="passes over the training sequences")
    batch_size: int = Field(256, ge=1, description="sequences per Adam step")
    lr: Positive = Field(1e-3, description="Adam step size")
    beta: float = Field(1.0, ge=0, description="final weight of the KL term")
    kl_warmup_epochs: int = Field(5, ge=0, description="epochs over which the KL weight ramps from 0 to beta")
    seed: int = Field(0, description="weight initialisation and shuffling seed")


def _mlp(widths: list[int]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.SiLU())
    return torch.nn.Sequential(*layers)


class SequenceVAE(torch.nn.Module):
    """The network: `forward(one_hot)` -> (logits (n, seq_len, n_tokens), mean, log_var (n, latent_dim))."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        width = config.seq_len * config.n_tokens
        self.encoder = _mlp([width, *config.hidden, 2 * config.latent_dim])
        self.decoder = _mlp([config.latent_dim, *reversed(config.hidden), width])

    def encode(self, one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log variance of flattened one-hot rows (n, seq_len * n_tokens)."""
        mean, log_var = self.encoder(one_hot).chunk(2, dim=-1)
        return mean, log_var.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Token logits (n, seq_len, n_tokens) of latent points z (n, latent_dim)."""
        return self.decoder(z).view(len(z), self.config.seq_len, self.config.n_tokens)

    def forward(self, one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, posterior mean and log variance; z is sampled in training mode, the mean in eval."""
        mean, log_var = self.encode(one_hot)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean
        return self.decode(z), mean, log_var


def as_tokens(X: np.ndarray, config: VAEConfig) -> np.ndarray:
    """(n, seq_len) int64 token indices of one-hot rows, given flat (n, seq_len * n_tokens) or
    (n, seq_len, n_tokens); DataError on any other shape."""
    X = np.asarray(X)
    if X.ndim == 2 and X.shape[1] == config.seq_len * config.n_tokens:
        X = X.reshape(len(X), config.seq_len, config.n_tokens)
    if X.shape[1:] != (config.seq_len, config.n_tokens):
        raise DataError(f"expected one-hot sequences of {config.seq_len} positions x {config.n_tokens} tokens, got shape {X.shape}")
    return X.argmax(axis=2).astype(np.int64)


def _one_hot(tokens: torch.Tensor, config: VAEConfig) -> torch.Tensor:
    return F.one_hot(tokens, config.n_tokens).to(torch.float32).flatten(1)


def _losses(network: SequenceVAE, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-batch mean reconstruction (nats per sequence) and KL (nats) terms of the ELBO."""
    logits, mean, log_var = network(_one_hot(tokens, network.config))
    reconstruction = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="sum") / len(tokens)
    kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp()) / len(tokens)
    return reconstruction, kl


class VAE:
    """The predictor: a trained `SequenceVAE` with its card; numpy in, numpy out, batched."""

    def __init__(self, network: SequenceVAE, card: dict[str, Any]) -> None:
        self.network = network.eval()
        self.config = network.config
        self.card = card

    @property
    def metadata(self) -> dict[str, Any]:
        """What the caller stored with the model (e.g. the SELFIES alphabet)."""
        return self.card.get("metadata", {})

    def embed(self, X: np.ndarray, batch_rows: int = 8192) -> np.ndarray:
        """Posterior means (n, latent_dim) of one-hot rows X."""
        tokens = torch.from_numpy(as_tokens(X, self.config))
        out = np.empty((len(tokens), self.config.latent_dim), np.float32)
        with torch.no_grad():
            for rows in row_batches(len(tokens), batch_rows):
                out[rows] = self.network.encode(_one_hot(tokens[rows], self.config))[0].numpy()
        return out

    def decode(self, z: np.ndarray, batch_rows: int = 8192) -> np.ndarray:
        """Most likely token at each position, (n, seq_len) int64, of latent points z (n, latent_dim)."""
        z = torch.as_tensor(np.asarray(z, np.float32).reshape(-1, self.config.latent_dim))
        out = np.empty((len(z), self.config.seq_len), np.int64)
        with torch.no_grad():
            for rows in row_batches(len(z), batch_rows):
                out[rows] = self.network.decode(z[rows]).argmax(-1).numpy()
        return out

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        """Token indices (n, seq_len) decoded from the posterior means of one-hot rows X."""
        return self.decode(self.embed(X))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """n sequences (token indices) decoded from standard-normal prior draws."""
        z = np.random.default_rng(seed).standard_normal((n, self.config.latent_dim))
        return self.decode(z)

    def reconstruction_accuracy(self, X: np.ndarray) -> dict[str, float]:
        """`token`: fraction of non-padding positions decoded right; `sequence`: fraction of rows
        decoded entirely right (padding included), from the posterior means."""
        truth = as_tokens(X, self.config)
        decoded = self.reconstruct(X)
        real = truth != self.config.pad_index
        right = decoded == truth
        return {"token": float(right[real].mean()), "sequence": float(right.all(axis=1).mean())}

    def save(self, path: str | Path) -> Path:
        """Write weights and card to one safetensors file (parents created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.network.state_dict().items()}
        save_file(tensors, str(path), metadata={CARD_KEY: json.dumps(self.card)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "VAE":
        """A saved VAE; DataError (one line) for a missing file, a file that is not safetensors,
        a checkpoint of another kind, or weights that do not fit the card."""
        card = read_card(path)
        network = SequenceVAE(VAEConfig(**card["config"]))
        try:
            network.load_state_dict(load_file(str(path)))
        except (RuntimeError, SafetensorError) as err:
            raise DataError(f"{path}: weights do not fit the card's architecture ({str(err).splitlines()[0]})") from None
        return cls(network, card)


def read_card(path: str | Path) -> dict[str, Any]:
    """The JSON card of a sequence-VAE file, checked to name this kind (DataError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        card = json.loads(header[CARD_KEY])
    except (SafetensorError, KeyError, ValueError, OSError):
        raise DataError(f"{path} is not an activescope model file (safetensors with a model card)") from None
    kind = card.get("kind") or card.get("architecture") or "unknown"
    if kind != KIND:
        what = f"a {kind!r} network (atom finder)" if "architecture" in card else f"a {kind!r} model"
        raise DataError(f"{path} holds {what}, not a {KIND}; give a file written by VAE.save")
    if card.get("format") != CARD_FORMAT or "config" not in card:
        raise DataError(f"{path}: unsupported {KIND} card (format {card.get('format')!r}, expected {CARD_FORMAT})")
    return card


class VAETrainer:
    """Trains a `SequenceVAE`: `fit(X, X_val)` returns the `VAE` predictor; `history` holds one
    row per epoch (loss, reconstruction and KL in nats per sequence, beta, seconds, and the
    held-out token accuracy when X_val is given)."""

    def __init__(self, config: VAEConfig, training: TrainConfig | None = None) -> None:
        self.config = config
        self.training = training or TrainConfig()
        self.history: list[dict[str, float]] = []

    def fit(
        self,
        X: np.ndarray,
        X_val: np.ndarray | None = None,
        metadata: dict[str, Any] | None = None,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
    ) -> VAE:
        """Train on one-hot rows X (n, seq_len * n_tokens); `metadata` goes into the card."""
        opts = self.training
        tokens = torch.from_numpy(as_tokens(X, self.config))
        if len(tokens) < 2:
            raise DataError(f"need at least 2 sequences to train a VAE, got {len(tokens)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            network = SequenceVAE(self.config)
            optimiser = torch.optim.Adam(network.parameters(), lr=opts.lr)
            rng = np.random.default_rng(opts.seed)
            steps = math.ceil(len(tokens) / opts.batch_size)
            for epoch in range(opts.epochs):
                t0 = time.perf_counter()
                network.train()
                order = torch.from_numpy(rng.permutation(len(tokens)))
                totals = np.zeros(3)
                for step in range(steps):
                    progress = (epoch + step / steps) / opts.kl_warmup_epochs if opts.kl_warmup_epochs else 1.0
                    beta = opts.beta * min(1.0, progress)
                    batch = tokens[order[step * opts.batch_size : (step + 1) * opts.batch_size]]
                    reconstruction, kl = _losses(network, batch)
                    loss = reconstruction + beta * kl
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    totals += [loss.item() * len(batch), reconstruction.item() * len(batch), kl.item() * len(batch)]
                row = dict(zip(("loss", "reconstruction", "kl"), (totals / len(tokens)).tolist()))
                row |= {"epoch": epoch + 1, "beta": beta, "seconds": time.perf_counter() - t0}
                if X_val is not None and len(X_val):
                    row["val_token_accuracy"] = VAE(network, {}).reconstruction_accuracy(X_val)["token"]
                self.history.append(row)
                if on_epoch is not None:
                    on_epoch(row)
        card = {"kind": KIND, "format": CARD_FORMAT, "config": self.config.model_dump(mode="json"),
                "training": {**opts.model_dump(mode="json"), "n_sequences": len(tokens), "history": self.history},
                "metadata": metadata or {}}
        return VAE(network, card)
