"""An im2spec patch encoder as the feature extractor of a DKL surrogate
(`model: {kind: dkl, extractor: pretrained, checkpoint: im2spec.safetensors}`).

Registered as the entry point ``imspec`` of the group ``activescope.extractors``, which the
DKL model looks up by the kind its checkpoint's card names, so models/ never imports
microscopy/. The encoder reads flattened patches exactly as the `probe_grid` source makes
them (``normalize: image``) and standardises them itself with its training statistics.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from activescope.engine.errors import SpecError
from activescope.microscopy.imspec.models import ImSpec
from activescope.microscopy.imspec.train import load_imspec


class PatchEncoder(nn.Module):
    """(n, side*side) patches -> (n, out_features) shared-latent coordinates."""

    def __init__(self, model: ImSpec) -> None:
        super().__init__()
        self.model = model
        self.in_features = model.shape.side ** 2
        self.out_features = model.shape.latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a batch of flattened patches."""
        return self.model.encode_patches(x)


def load_extractor(path: str | Path, n_inputs: int) -> PatchEncoder:
    """The patch encoder of an im2spec checkpoint, checked against `n_inputs` feature columns."""
    model, _ = load_imspec(path)
    encoder = PatchEncoder(model)
    if encoder.in_features != n_inputs:
        side = model.shape.side
        raise SpecError(f"model.checkpoint: {Path(path).name} encodes {side} x {side} patches ({side * side} "
                        f"columns) but the pool has {n_inputs} feature columns (set data.window: {side})")
    return encoder
