"""Checkpoints that name their kind: safetensors weights plus a JSON card whose ``kind`` field
says which network family wrote them (``ivae``, ``imspec``; atom finders have no ``kind``).

Loading a file of another kind fails with one line that names both kinds, instead of a
confusing shape mismatch deep inside ``load_state_dict``. Nothing is pickled.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from activescope.engine.errors import DataError

METADATA_KEY = "activescope"
"""Key of the safetensors header metadata that holds the JSON card (atom finders' too)."""

KIND_NAMES = {"ivae": "invariant VAE (atoms embed-train)", "imspec": "im2spec/spec2im model",
              None: "atom finder (atoms train)"}


def read_kind_card(path: str | Path) -> dict[str, Any]:
    """The JSON card of any activescope safetensors checkpoint (``kind`` None for atom finders)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError("bad header size")
            card = json.loads(json.loads(handle.read(size))["__metadata__"][METADATA_KEY])
        if not isinstance(card, dict):
            raise TypeError("card is not an object")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise DataError(f"{path} is not an activescope checkpoint (safetensors with a model card)") from None
    card.setdefault("kind", None)
    return card


def save_kinded(path: str | Path, kind: str, module: torch.nn.Module, card: dict[str, Any]) -> Path:
    """Write `module`'s weights and `card` (with ``kind`` and the activescope version) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().clone().contiguous() for name, t in module.state_dict().items()}
    meta = {**card, "kind": kind, "version": version("activescope")}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


def load_kinded(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, card) of a checkpoint of `kind`; a file of another kind or a corrupt one raises
    DataError with one line."""
    card = read_kind_card(path)
    if card["kind"] != kind:
        found = KIND_NAMES.get(card["kind"], repr(card["kind"]))
        raise DataError(f"{path} is an {found} checkpoint, not an {KIND_NAMES[kind]} one")
    try:
        return load_file(str(path)), card
    except SafetensorError as err:
        raise DataError(f"checkpoint {path} is corrupt: {str(err).splitlines()[0]}") from None


def restore(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> torch.nn.Module:
    """Load `tensors` into `module` strictly (eval mode); a mismatch raises DataError."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise DataError(f"checkpoint {path} does not match its architecture: {str(err).strip().splitlines()[0]}") from None
    return module.eval()


def load_shaped(path: str | Path, kind: str, shape_type: Callable[..., Any], model_type: Callable[[Any], torch.nn.Module],
                what: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, card) of a `kind` checkpoint whose card holds the architecture under
    "shape": `model_type(shape_type(**card["shape"]))` with the stored weights. DataError for a
    missing, corrupt or other-kind file, or a card without a valid `what` shape."""
    tensors, card = load_kinded(path, kind)
    try:
        shape = shape_type(**card["shape"])
    except (KeyError, TypeError):
        raise DataError(f"{path}: the model card has no valid {what} shape") from None
    return restore(model_type(shape), tensors, path), card
