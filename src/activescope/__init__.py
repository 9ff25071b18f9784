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
from typing import TYPE_CHECKING

from .engine.lazy import lazy_exports

__version__ = _installed_version("activescope")

_EXPORTS = {
    "Acquisition": "activescope.engine.acquisition",
    "Campaign": "activescope.engine.campaign",
    "CampaignSummary": "activescope.engine.campaign",
    "ActivescopeError": "activescope.engine.errors",
    "DataError": "activescope.engine.errors",
    "RunStateError": "activescope.engine.errors",
    "SpecError": "activescope.engine.errors",
    "Measurement": "activescope.engine.oracle",
    "Oracle": "activescope.engine.oracle",
    "Pool": "activescope.engine.pool",
    "build_pool": "activescope.engine.pool",
    "ACQUISITIONS": "activescope.engine.registry",
    "INSTRUMENTS": "activescope.engine.registry",
    "MODELS": "activescope.engine.registry",
    "ORACLES": "activescope.engine.registry",
    "SCALARIZERS": "activescope.engine.registry",
    "SOURCES": "activescope.engine.registry",
    "register_acquisition": "activescope.engine.registry",
    "register_instrument": "activescope.engine.registry",
    "register_model": "activescope.engine.registry",
    "register_oracle": "activescope.engine.registry",
    "register_scalarizer": "activescope.engine.registry",
    "register_source": "activescope.engine.registry",
    "CampaignSpec": "activescope.engine.spec",
    "load_spec": "activescope.engine.spec",
    "parse_spec": "activescope.engine.spec",
    "steer_run": "activescope.engine.steering",
    "Surrogate": "activescope.engine.surrogate",
}
"""Public name -> the module that defines it. Loaded on first use (PEP 562), so that importing a
submodule (the CLI imports `activescope.engine.errors`) does not pay for pandas and SciPy."""

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .engine.acquisition import Acquisition
    from .engine.campaign import Campaign, CampaignSummary
    from .engine.errors import ActivescopeError, DataError, RunStateError, SpecError
    from .engine.oracle import Measurement, Oracle
    from .engine.pool import Pool, build_pool
    from .engine.registry import (
        ACQUISITIONS,
        INSTRUMENTS,
        MODELS,
        ORACLES,
        SCALARIZERS,
        SOURCES,
        register_acquisition,
        register_instrument,
        register_model,
        register_oracle,
        register_scalarizer,
        register_source,
    )
    from .engine.spec import CampaignSpec, load_spec, parse_spec
    from .engine.steering import steer_run
    from .engine.surrogate import Surrogate
