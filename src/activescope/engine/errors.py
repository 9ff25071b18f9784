"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class ActivescopeError(Exception):
    """A problem with the user's input (spec, data, run directory); never a bug."""


class SpecError(ActivescopeError):
    """The campaign spec is malformed or names something that does not exist."""


class DataError(ActivescopeError):
    """Input data (pool, measurements, images) is missing, malformed or inconsistent."""


class RunStateError(ActivescopeError):
    """A run directory is missing, corrupt, or does not match the requested operation."""


class SamplingError(ActivescopeError):
    """Posterior sampling (MCMC) did not converge or diverged: its answer would be wrong."""
