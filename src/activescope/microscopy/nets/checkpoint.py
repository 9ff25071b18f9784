"""Model checkpoints: safetensors weights with JSON metadata, never pickled objects.

One ``.safetensors`` file holds one model or an ensemble (tensor names prefixed by the member
index) and, in its header, a JSON ``ModelCard``: the network's registry name and keyword
arguments, the atom classes, the pixel size, the training settings and the activescope
version. Loading rebuilds the network from the registry and validates everything, so a
checkpoint from an untrusted source can at worst fail with a ``DataError``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from activescope.engine.errors import ActivescopeError, DataError
from activescope.microscopy.nets.kinded import KIND_NAMES, METADATA_KEY, read_kind_card
from activescope.microscopy.nets.unet import UNet, build_network


@dataclass
class ModelCard:
    """What a checkpoint's networks are and how they were made.

    ``classes`` names every output channel in order, background first (as
    ``lattice_classes`` gives them); ``pixel_size`` is in angstrom per pixel (None if unknown).
    """

    architecture: str
    architecture_kwargs: dict[str, Any]
    classes: list[str]
    pixel_size: float | None = None
    training: dict[str, Any] = field(default_factory=dict)
    n_members: int = 1
    version: str = field(default_factory=lambda: version("activescope"))

    @property
    def lattice(self) -> str | None:
        """The lattice the networks were trained on, when the card records it."""
        value = self.training.get("lattice") or self.training.get("simulation", {}).get("lattice")
        return str(value) if value else None

    @property
    def lattice_spacing(self) -> float | None:
        """Nearest-neighbour column spacing of the training lattice in Å, when known."""
        value = self.training.get("lattice_spacing_A")
        if value is not None:
            return float(value)
        if self.lattice is None:
            return None
        from activescope.microscopy.find.locate import lattice_spacing_angstrom

        strain = self.training.get("simulation", {}).get("strain", 0.0)
        return lattice_spacing_angstrom(self.lattice, float(strain or 0.0))

    def build(self) -> UNet:
        """A freshly initialised network of this card's architecture."""
        return build_network(self.architecture, n_classes=len(self.classes),
                             **self.architecture_kwargs)


def save_checkpoint(path: str | Path, models: UNet | Sequence[UNet], card: ModelCard) -> Path:
    """Write one model or an ensemble of same-architecture models to ``path``."""
    members = [models] if isinstance(models, torch.nn.Module) else list(models)
    card.n_members = len(members)
    tensors = {
        f"{index}.{name}": tensor.detach().cpu().clone().contiguous()
        for index, member in enumerate(members)
        for name, tensor in member.state_dict().items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(asdict(card))})
    return path


def read_card(path: str | Path) -> ModelCard:
    """Read and validate only the metadata of a checkpoint."""
    meta = read_kind_card(path)
    kind = meta.pop("kind")
    if kind:
        raise DataError(f"{path} is an {KIND_NAMES.get(kind, repr(kind))} checkpoint, not an atom finder (atoms train)")
    try:
        return ModelCard(**meta)
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path} is not an activescope checkpoint (safetensors with a model card)") from None


def load_checkpoint(path: str | Path, classes: Sequence[str] | None = None,
                    device: str | torch.device = "cpu") -> tuple[list[UNet], ModelCard]:
    """Load every member of a checkpoint in eval mode, checking the classes when given.

    Raises ``DataError`` when the file is not a valid checkpoint, when its weights do not fit
    its architecture, or when ``classes`` differs from the checkpoint's classes.
    """
    card = read_card(path)
    if classes is not None and list(classes) != list(card.classes):
        raise DataError(f"model {path} was trained for classes {card.classes}, "
                        f"not the requested {list(classes)}")
    try:
        tensors = load_file(str(path))
        members = []
        for index in range(card.n_members):
            prefix = f"{index}."
            state = {name[len(prefix):]: value for name, value in tensors.items()
                     if name.startswith(prefix)}
            model = card.build()
            model.load_state_dict(state, strict=True)
            members.append(model.to(device).eval())
    except (SafetensorError, RuntimeError, ActivescopeError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"checkpoint {path} is corrupt or does not match its architecture: "
                        f"{first_line}") from None
    return members, card
