"""activescope: Bayesian active learning and autonomous experimentation."""

__version__ = "0.1.0"
