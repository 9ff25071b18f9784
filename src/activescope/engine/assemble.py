"""Assembling a campaign from its spec: the instrument, the pool, the surrogate. Shared by the
campaign, the steering command and the report, which each need the pieces a spec names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import SpecError
from .pool import Pool, build_pool
from .registry import INSTRUMENTS, MODELS
from .spec import CampaignSpec, load_spec, parse_spec
from .surrogate import Surrogate


def build_surrogate(spec: CampaignSpec, pool: Pool) -> Surrogate:
    """The spec's surrogate, told the pool's feature blocks (for its `columns` option). A model
    with a `seed` option gets the campaign's seed unless the spec sets one, so repeated seeds of a
    benchmark vary the model too, not only the initial design."""
    options = spec.model.options()
    if "seed" in MODELS.get(spec.model.kind).options.model_fields:
        options.setdefault("seed", spec.seed)
    model = MODELS.build(spec.model.kind, options, section="model")
    if hasattr(model, "use_feature_blocks"):
        model.use_feature_blocks(pool.feature_kinds)
    if hasattr(model, "use_feature_names"):
        model.use_feature_names(pool.feature_names)
    return model


def build_instrument(spec: CampaignSpec) -> Any:
    """The instrument the spec's `instrument:` section names, or None without one."""
    if spec.instrument is None:
        return None
    return INSTRUMENTS.build(spec.instrument.kind, spec.instrument.options(), section="instrument")


def build_pool_for(spec: CampaignSpec, instrument: Any = None) -> Pool:
    """The pool named by the spec's data section (features from the disk cache when present),
    built from `instrument` when the source takes one."""
    if spec.data is None:
        raise SpecError("the spec has no data section: give the campaign a pool (Campaign.create(..., pool=...))")
    return build_pool(spec.data.source, instrument=instrument, **spec.data.options())


def as_spec(spec: CampaignSpec | Mapping[str, Any] | str | Path) -> CampaignSpec:
    """A validated spec from a CampaignSpec, a mapping (as parsed YAML) or a YAML file path."""
    if isinstance(spec, CampaignSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(dict(spec))
    return load_spec(spec)
