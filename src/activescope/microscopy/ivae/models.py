"""Invariant VAE for atom-centred patches (rVAE-style), and the plain VAE it is compared with.

Encoder: an MLP on the flattened patch (plus a one-hot class for the conditional variant) gives
the mean and log-variance of the latent vector ``[z (latent_dim) | angle (1, with rotation) |
shift (2, with translation)]``. The angle's mean is the direction atan2(v, u) of two encoder
outputs, so the encoder can follow a patch turning through a full circle continuously.

Decoder: a coordinate network. The patch's pixel grid ``r`` (coordinates in [-1, 1]) is turned
into ``R(angle) r + shift`` (a spatial-transformer grid), and an MLP maps each transformed
coordinate together with ``z`` (and the class) to that pixel's intensity (the coordinate enters with fixed random Fourier features, so sharp atoms
can be drawn). Rotation and
translation are thus explicit latent variables the decoder applies, and ``z`` is free to
describe what does not depend on them. Without rotation and translation the same network is a
plain VAE (``IVAE(rotation=False, translation=False)``), the baseline of the invariance checks.

Priors: z ~ N(0, 1); angle ~ N(0, angle_prior²) (radians); shift ~ N(0, shift_prior²) (grid
units, 1 = half the patch width). Reconstruction: Gaussian with fixed std `noise`, summed over
pixels (patches are in [0, 1]). Optionally (`consistency` in `IVAE.loss`, on by default in
training) each batch is rotated at random and the z means of a patch and its rotated copy are
pulled together: the plain rVAE objective alone often leaves part of the orientation in z.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

FOURIER_FEATURES = 16
"""Random Fourier features of each (transformed) coordinate the decoder sees besides the
coordinate itself, so that it can draw sharp atoms (fixed, seeded frequencies)."""
FOURIER_SCALE = 4.0
"""Standard deviation of the Fourier frequencies, radians per grid unit."""


@dataclass
class IVAEShape:
    """Architecture of an IVAE (what a checkpoint card records).

    side: patch pixels per axis. latent_dim: size of z (rotation/translation excluded).
    rotation, translation: explicit angle / shift latents. n_classes: > 0 for the
    class-conditioned variant. hidden: encoder and decoder widths. angle_prior (rad),
    shift_prior (grid units), noise (reconstruction std, intensity units)."""

    side: int = 20
    latent_dim: int = 2
    rotation: bool = True
    translation: bool = True
    n_classes: int = 0
    hidden: int = 128
    angle_prior: float = math.pi
    shift_prior: float = 0.1
    noise: float = 0.1

    def to_dict(self) -> dict:
        """Plain dict for the model card."""
        return asdict(self)


class IVAE(nn.Module):
    """Rotation- (and translation-) invariant VAE; see the module docstring."""

    def __init__(self, shape: IVAEShape) -> None:
        super().__init__()
        self.shape = shape
        s, h = shape.side, shape.hidden
        self.n_pose = int(shape.rotation) + 2 * int(shape.translation)
        n_latent = shape.latent_dim + self.n_pose
        self.encoder = nn.Sequential(nn.Linear(s * s + shape.n_classes, 2 * h), nn.SiLU(),
                                     nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, 2 * n_latent + int(shape.rotation)))
        axis = torch.linspace(-1.0, 1.0, s)
        rows, cols = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("grid", torch.stack([cols.ravel(), rows.ravel()], dim=-1), persistent=False)
        frequencies = torch.randn(2, FOURIER_FEATURES, generator=torch.Generator().manual_seed(0)) * FOURIER_SCALE
        self.register_buffer("frequencies", frequencies, persistent=False)
        self.coord_in = nn.Linear(2 + 2 * FOURIER_FEATURES, h)
        self.latent_in = nn.Linear(shape.latent_dim + shape.n_classes, h)
        self.decoder = nn.Sequential(nn.Tanh(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(),
                                     nn.Linear(h, 1))

    def _condition(self, x: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor | None:
        if self.shape.n_classes == 0:
            return None
        if classes is None:
            raise ValueError("this class-conditioned VAE needs the class of every patch")
        return nn.functional.one_hot(classes.long(), self.shape.n_classes).to(x.dtype)

    def encode(self, patches: torch.Tensor, classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, side, side) patches -> mean and log-variance (n, latent_dim + n_pose) each."""
        flat = patches.reshape(len(patches), -1)
        cond = self._condition(flat, classes)
        if cond is not None:
            flat = torch.cat([flat, cond], dim=1)
        out = self.encoder(flat)
        n_latent = self.shape.latent_dim + self.n_pose
        mean, logvar = out[:, :n_latent], out[:, -n_latent:]
        if self.shape.rotation:
            d = self.shape.latent_dim
            angle = torch.atan2(out[:, d + 1], out[:, d])
            mean = torch.cat([mean[:, :d], angle[:, None], out[:, d + 2:n_latent + 1]], dim=1)
        return mean, logvar.clamp(-12.0, 6.0)

    def split(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """latent (n, latent_dim + n_pose) -> z, angle (n,) radians or None, shift (n, 2) or None."""
        d = self.shape.latent_dim
        z, rest = latent[:, :d], latent[:, d:]
        angle = rest[:, 0] if self.shape.rotation else None
        shift = rest[:, -2:] if self.shape.translation else None
        return z, angle, shift

    def decode(self, latent: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """latent (n, latent_dim + n_pose) -> patches (n, side, side) in (0, 1)."""
        z, angle, shift = self.split(latent)
        grid = self.grid.expand(len(latent), -1, -1)
        if angle is not None:
            cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
            grid = torch.stack([cos * grid[..., 0] - sin * grid[..., 1], sin * grid[..., 0] + cos * grid[..., 1]], dim=-1)
        if shift is not None:
            grid = grid + shift[:, None, :]
        cond = self._condition(z, classes)
        code = z if cond is None else torch.cat([z, cond], dim=1)
        phase = grid @ self.frequencies
        features = torch.cat([grid, torch.sin(phase), torch.cos(phase)], dim=-1)
        hidden = self.coord_in(features) + self.latent_in(code)[:, None, :]
        side = self.shape.side
        return torch.sigmoid(self.decoder(hidden)).reshape(len(latent), side, side)

    def _prior_std(self, device: torch.device) -> torch.Tensor:
        s = self.shape
        std = [1.0] * s.latent_dim + [s.angle_prior] * int(s.rotation) + [s.shift_prior] * 2 * int(s.translation)
        return torch.tensor(std, device=device)

    def loss(self, patches: torch.Tensor, classes: torch.Tensor | None = None, beta: float = 1.0,
             consistency: float = 0.0) -> torch.Tensor:
        """Negative ELBO per patch (nats), averaged over the batch; beta weighs the KL term.

        consistency > 0 (rotation models only): the ELBO is taken on a randomly rotated copy of
        each patch, and consistency x the squared distance between the z means of the patch and
        of its copy is added, which steers the orientation into the angle latent."""
        penalty = 0.0
        if consistency > 0 and self.shape.rotation:
            angles = torch.rand(len(patches), device=patches.device) * (2 * math.pi)
            rotated = rotate(patches, angles)
            z_plain = self.encode(patches, classes)[0][:, :self.shape.latent_dim]
            patches = rotated
        mean, logvar = self.encode(patches, classes)
        if consistency > 0 and self.shape.rotation:
            penalty = consistency * (mean[:, :self.shape.latent_dim] - z_plain).pow(2).sum(1)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        recon = self.decode(latent, classes)
        nll = 0.5 * ((recon - patches) / self.shape.noise).pow(2).flatten(1).sum(1)
        prior = self._prior_std(patches.device)
        kl = (torch.log(prior) - 0.5 * logvar + (logvar.exp() + mean.pow(2)) / (2 * prior.pow(2)) - 0.5).sum(1)
        return (nll + beta * kl + penalty).mean()


def rotate(patches: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """(n, s, s) patches rotated by `angles` (n,) radians about their centres (bilinear, the
    patch reflected outside its edge)."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = nn.functional.affine_grid(theta, (len(patches), 1, *patches.shape[1:]), align_corners=True)
    return nn.functional.grid_sample(patches[:, None], grid, mode="bilinear", padding_mode="reflection",
                                     align_corners=True)[:, 0]
