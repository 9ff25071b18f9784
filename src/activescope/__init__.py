"""activescope: Bayesian active learning and autonomous experimentation.

The public API::

    from activescope import Campaign, Pool, load_spec

    campaign = Campaign.create(None, load_spec("my.yaml"), pool=Pool.from_frame(df, features=[...]))
    batch = campaign.ask()                      # DataFrame: id, info, mean, std, acquisition
    campaign.tell(batch["id"], measured_values)

Plugins (models, acquisition functions, oracles, pool sources, scalarizers) register with the
`register_*` decorators or, for installed packages, with entry points in the groups
``activescope.models``, ``activescope.acquisitions``, ``activescope.oracles``,
``activescope.sources`` and ``activescope.scalarizers``.
"""

from importlib.metadata import version as _installed_version

__version__ = _installed_version("activescope")

from .engine.acquisition import Acquisition
from .engine.campaign import Campaign, CampaignSummary
from .engine.errors import ActivescopeError, DataError, RunStateError, SpecError
from .engine.oracle import Measurement, Oracle
from .engine.pool import Pool, build_pool
from .engine.registry import (
    ACQUISITIONS,
    MODELS,
    ORACLES,
    SCALARIZERS,
    SOURCES,
    register_acquisition,
    register_model,
    register_oracle,
    register_scalarizer,
    register_source,
)
from .engine.spec import CampaignSpec, load_spec, parse_spec
from .engine.surrogate import Surrogate

__all__ = [
    "ACQUISITIONS",
    "Acquisition",
    "ActivescopeError",
    "Campaign",
    "CampaignSpec",
    "CampaignSummary",
    "DataError",
    "MODELS",
    "Measurement",
    "ORACLES",
    "Oracle",
    "Pool",
    "RunStateError",
    "SCALARIZERS",
    "SOURCES",
    "SpecError",
    "Surrogate",
    "build_pool",
    "load_spec",
    "parse_spec",
    "register_acquisition",
    "register_model",
    "register_oracle",
    "register_scalarizer",
    "register_source",
]
