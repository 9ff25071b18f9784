"""On-the-fly, batched image augmentation for segmentation training.

Every transform acts on a whole batch at once, images ``(N, 1, H, W)`` float and labels
``(N, H, W)`` long (class per pixel; ``IGNORE_INDEX`` marks pixels left out of the loss), with
per-frame random parameters drawn from one ``torch.Generator`` so a seed fixes the result.
Geometric transforms move labels exactly as images; photometric ones touch images only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

IGNORE_INDEX = 255
"""Label value for pixels excluded from the loss (uncertain pseudo-label regions)."""


def _uniform(n: int, low: float, high: float, generator: torch.Generator,
             device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator).to(device)


def rot90_flip(images: torch.Tensor, labels: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random multiple of 90 degrees and random horizontal flip per frame (square frames)."""
    n = images.shape[0]
    turns = torch.randint(0, 4, (n,), generator=generator).to(images.device)
    flips = torch.rand(n, generator=generator).to(images.device) < 0.5
    images = torch.where(flips[:, None, None, None], images.flip(-1), images)
    labels = torch.where(flips[:, None, None], labels.flip(-1), labels)
    out_images, out_labels = images.clone(), labels.clone()
    for k in range(1, 4):
        chosen = turns == k
        out_images[chosen] = torch.rot90(images[chosen], k, dims=(-2, -1))
        out_labels[chosen] = torch.rot90(labels[chosen], k, dims=(-2, -1))
    return out_images, out_labels


def zoom(images: torch.Tensor, labels: torch.Tensor, scale_range: tuple[float, float],
         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic zoom by a per-frame factor (>1 magnifies), reflecting at the borders.

    Labels are resampled with nearest neighbour so classes stay integers.
    """
    n = images.shape[0]
    scale = _uniform(n, *scale_range, generator, images.device)
    theta = torch.zeros(n, 2, 3, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                           align_corners=False)
    labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest",
                           padding_mode="reflection", align_corners=False)[:, 0].long()
    return images, labels


def gaussian_blur(images: torch.Tensor, sigma_range: tuple[float, float],
                  generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur with a per-frame width in pixels, as one grouped convolution."""
    n = images.shape[0]
    sigma = _uniform(n, *sigma_range, generator, images.device)
    radius = int(torch.ceil(3 * sigma.max()).item())
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel_1d = torch.exp(-0.5 * (offsets[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    kernel_1d = kernel_1d / kernel_1d.sum(dim=1, keepdim=True)
    kernel = (kernel_1d[:, :, None] * kernel_1d[:, None, :])[:, None]
    padded = F.pad(images.transpose(0, 1), (radius,) * 4, mode="reflect")
    return F.conv2d(padded, kernel, groups=n).transpose(0, 1)


def poisson_gaussian_noise(images: torch.Tensor, dose_range: tuple[float, float],
                           read_noise_range: tuple[float, float],
                           generator: torch.Generator) -> torch.Tensor:
    """Shot noise at a per-frame dose (counts at the brightest pixel) plus Gaussian read noise.

    Images are rescaled to [0, 1] first, so the dose is in electrons per brightest pixel and
    the read noise is a fraction of the brightest pixel's intensity.
    """
    n = images.shape[0]
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    unit = (images - low) / (high - low).clamp_min(1e-6)
    dose = torch.exp(_uniform(n, *map(float, torch.log(torch.tensor(dose_range)).tolist()),
                              generator, images.device))[:, None, None, None]
    counts = torch.poisson(unit * dose, generator=generator) / dose
    read = _uniform(n, *read_noise_range, generator, images.device)[:, None, None, None]
    gauss = torch.randn(unit.shape, generator=generator).to(images.device)
    return counts + read * gauss


def gamma_contrast(images: torch.Tensor, gamma_range: tuple[float, float],
                   generator: torch.Generator) -> torch.Tensor:
    """Per-frame gamma on the [0, 1]-rescaled image (changes relative atom contrast)."""
    n = images.shape[0]
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    unit = (images - low) / (high - low).clamp_min(1e-6)
    gamma = _uniform(n, *gamma_range, generator, images.device)[:, None, None, None]
    return unit.clamp_min(0) ** gamma


def background_gradient(images: torch.Tensor, max_slope: float,
                        generator: torch.Generator) -> torch.Tensor:
    """Add a random linear background ramp of up to ``max_slope`` x the image range per frame."""
    n, _, height, width = images.shape
    span = (images.amax(dim=(-2, -1)) - images.amin(dim=(-2, -1)))[:, 0]
    angle = _uniform(n, 0.0, 2 * torch.pi, generator, images.device)
    slope = _uniform(n, 0.0, max_slope, generator, images.device) * span
    ys = torch.linspace(-0.5, 0.5, height, device=images.device)
    xs = torch.linspace(-0.5, 0.5, width, device=images.device)
    ramp = (torch.cos(angle)[:, None, None] * xs[None, None, :]
            + torch.sin(angle)[:, None, None] * ys[None, :, None])
    return images + (slope[:, None, None] * ramp)[:, None]


@dataclass
class Augmenter:
    """The default training augmentation: each transform applied to a random subset of frames.

    Ranges are in physical-ish units: ``dose`` in counts at the brightest pixel, ``blur_sigma``
    in pixels, ``zoom`` as magnification, ``background_slope`` as a fraction of image range.
    """

    p: float = 0.25
    zoom_range: tuple[float, float] = (0.9, 1.1)
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    dose: tuple[float, float] = (300.0, 5000.0)
    read_noise: tuple[float, float] = (0.0, 0.05)
    gamma: tuple[float, float] = (0.8, 1.25)
    background_slope: float = 0.2

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch; returns new ``(images, labels)`` tensors."""
        images, labels = rot90_flip(images, labels, generator)
        images, labels = self._maybe_geometric(images, labels, generator)
        for transform in (
            lambda x: gamma_contrast(x, self.gamma, generator),
            lambda x: gaussian_blur(x, self.blur_sigma, generator),
            lambda x: poisson_gaussian_noise(x, self.dose, self.read_noise, generator),
            lambda x: background_gradient(x, self.background_slope, generator),
        ):
            chosen = torch.rand(images.shape[0], generator=generator).to(images.device) < self.p
            if chosen.any():
                images = images.clone()
                images[chosen] = transform(images[chosen])
        return images, labels

    def _maybe_geometric(self, images: torch.Tensor, labels: torch.Tensor,
                         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.rand(images.shape[0], generator=generator).to(images.device) < self.p
        if not chosen.any():
            return images, labels
        images, labels = images.clone(), labels.clone()
        images[chosen], labels[chosen] = zoom(images[chosen], labels[chosen], self.zoom_range,
                                              generator)
        return images, labels
