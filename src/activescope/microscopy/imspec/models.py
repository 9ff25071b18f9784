"""im2spec and spec2im: encoder-decoders between an image patch and a local spectrum that share
one latent space.

Four parts: a patch encoder (two 3 x 3 convolutions and an MLP), a spectrum encoder (MLP), a
spectrum decoder and a patch decoder (MLPs). im2spec is ``spectrum_decoder(patch_encoder(x))``,
spec2im is ``patch_decoder(spectrum_encoder(y))``. Training (`loss`) asks for both directions,
for both auto-encodings, and for the two encoders to agree on each pair's latent point, so the
latent is one space in which patches and spectra meet.

Inputs are standardised inside the model with statistics of the training set (buffers saved in
the checkpoint): patches by one mean/std, spectra per channel; outputs are in data units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

CONV_CHANNELS = 16
"""Channels of the patch encoder's two convolutions."""


@dataclass
class ImSpecShape:
    """side: patch pixels per axis; channels: spectrum points; latent_dim: shared latent size;
    hidden: MLP width."""

    side: int
    channels: int
    latent_dim: int = 8
    hidden: int = 128

    def to_dict(self) -> dict:
        """Plain dict for the model card."""
        return asdict(self)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class ImSpec(nn.Module):
    """The four networks and the normalisation buffers; see the module docstring."""

    def __init__(self, shape: ImSpecShape) -> None:
        super().__init__()
        self.shape = shape
        s, c, d, h = shape.side, shape.channels, shape.latent_dim, shape.hidden
        self.patch_encoder = nn.Sequential(
            nn.Unflatten(1, (1, s, s)),
            nn.Conv2d(1, CONV_CHANNELS, 3, padding=1), nn.SiLU(),
            nn.Conv2d(CONV_CHANNELS, CONV_CHANNELS, 3, padding=1, stride=2), nn.SiLU(),
            nn.Flatten(), _mlp(CONV_CHANNELS * ((s + 1) // 2) ** 2, h, d))
        self.spectrum_encoder = _mlp(c, h, d)
        self.spectrum_decoder = _mlp(d, h, c)
        self.patch_decoder = _mlp(d, h, s * s)
        self.register_buffer("patch_stats", torch.tensor([0.0, 1.0]))
        self.register_buffer("spectrum_mean", torch.zeros(c))
        self.register_buffer("spectrum_std", torch.ones(c))

    def set_statistics(self, patches: torch.Tensor, spectra: torch.Tensor) -> None:
        """Normalisation statistics from training patches (n, s*s) and spectra (n, c)."""
        self.patch_stats.copy_(torch.stack([patches.mean(), patches.std().clamp_min(1e-8)]))
        self.spectrum_mean.copy_(spectra.mean(0))
        self.spectrum_std.copy_(spectra.std(0).clamp_min(1e-8 + 1e-3 * float(spectra.std())))

    def _patch_in(self, patches: torch.Tensor) -> torch.Tensor:
        return (patches - self.patch_stats[0]) / self.patch_stats[1]

    def _spectrum_in(self, spectra: torch.Tensor) -> torch.Tensor:
        return (spectra - self.spectrum_mean) / self.spectrum_std

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """(n, s*s) patches -> (n, latent_dim) shared latent."""
        return self.patch_encoder(self._patch_in(patches))

    def encode_spectra(self, spectra: torch.Tensor) -> torch.Tensor:
        """(n, c) spectra -> (n, latent_dim) shared latent."""
        return self.spectrum_encoder(self._spectrum_in(spectra))

    def im2spec(self, patches: torch.Tensor) -> torch.Tensor:
        """(n, s*s) patches -> predicted spectra (n, c), data units."""
        return self.spectrum_decoder(self.encode_patches(patches)) * self.spectrum_std + self.spectrum_mean

    def spec2im(self, spectra: torch.Tensor) -> torch.Tensor:
        """(n, c) spectra -> predicted patches (n, s*s), data units."""
        return self.patch_decoder(self.encode_spectra(spectra)) * self.patch_stats[1] + self.patch_stats[0]

    def loss(self, patches: torch.Tensor, spectra: torch.Tensor) -> torch.Tensor:
        """Mean squared errors (standardised units) of im2spec, spec2im, both auto-encodings and
        the latent agreement of each pair, summed."""
        x, y = self._patch_in(patches), self._spectrum_in(spectra)
        zx, zy = self.patch_encoder(x), self.spectrum_encoder(y)
        mse = nn.functional.mse_loss
        return (mse(self.spectrum_decoder(zx), y) + mse(self.patch_decoder(zy), x) + mse(self.spectrum_decoder(zy), y)
                + mse(self.patch_decoder(zx), x) + mse(zx, zy))
