"""The latent-comparison spec: one YAML file for `activescope latent compare SPEC`.

Sections forbid unknown keys, so a typo is a one-line error naming the field (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...engine.spec import read_yaml, validate_document
from ...models.base import LayerWidths


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatentData(_Options):
    """The QM9 pool (SELFIES one-hot features) and the target."""

    target: str = Field("dipole", description="QM9 target column or alias, e.g. dipole, gap, alpha")
    goal: Literal["maximize", "minimize"] = Field("maximize", description="search for the largest or smallest values")
    subset: int | None = Field(None, ge=100, description="seeded random subset of QM9 (default: all 130,831 molecules)")
    subset_seed: int = Field(0, description="seed of the subset")
    max_length: int | None = Field(None, ge=1, description="SELFIES tokens per molecule (default: the pool's longest)")


class VAESection(_Options):
    """The unsupervised VAE on the SELFIES one-hot (or a trained one from `path`)."""

    path: Path | None = Field(None, description="a VAE file written by an earlier study (vae.safetensors) instead of training")
    latent_dim: int = Field(2, ge=2, description="latent dimension; the maps and k-NN use the first two axes")
    hidden: LayerWidths = (256, 128)
    epochs: int = Field(20, ge=1, description="training passes over the pool")
    batch_size: int | None = Field(
        None, ge=8, description="sequences per Adam step (default: about 100 steps per epoch, between 64 and 1024)")
    lr: float = Field(2e-3, gt=0, description="Adam step size")
    beta: float = Field(1.0, ge=0, description="final KL weight")
    kl_warmup_epochs: int = Field(5, ge=0, description="epochs over which the KL weight ramps up from 0")
    holdout: float = Field(0.05, gt=0, lt=0.5, description="fraction of the pool held out of training to score reconstruction")
    samples: int = Field(1000, ge=10, description="prior samples decoded to score validity, uniqueness and novelty")
    seed: int = Field(0, description="weight initialisation, shuffling and hold-out seed")


class CampaignSection(_Options):
    """The active-learning protocol both strategies share (same initial design, batches, budget)."""

    budget: int = Field(500, ge=10, description="measurements per campaign, the initial design included")
    initial: int = Field(50, ge=2, description="random initial design")
    q: int = Field(50, ge=1, description="batch size per round")
    acquisition: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "ucb", "beta": 2.0},
        description="acquisition section of a campaign spec (kind and options), e.g. {kind: ei}")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="campaign seeds (initial design and choices)")
    top_k: int = Field(100, ge=1, description="recall counts the pool's top-k molecules")

    @model_validator(mode="after")
    def _initial_within_budget(self) -> "CampaignSection":
        if self.initial > self.budget:
            raise ValueError(f"initial ({self.initial}) exceeds budget ({self.budget})")
        return self


class ModelsSection(_Options):
    """Surrogate options: `gp` works on the VAE latent, `dkl` on the SELFIES one-hot."""

    gp: dict[str, Any] = Field(default_factory=lambda: {"kernel": "matern"}, description="options of model kind gp")
    dkl: dict[str, Any] = Field(
        default_factory=lambda: {"hidden": [128, 32], "latent_dim": 2, "fit_iters": 150, "warm_iters": 30},
        description="options of model kind dkl (latent_dim 2 to draw its maps)")

    @model_validator(mode="after")
    def _options_are_valid(self) -> "ModelsSection":
        from ...engine.registry import MODELS

        MODELS.validate("gp", self.gp, "models.gp")
        MODELS.validate("dkl", self.dkl, "models.dkl")
        if self.dkl.get("latent_dim", 2) != 2:
            raise ValueError("models.dkl.latent_dim must be 2: the comparison draws and scores 2-D maps")
        return self


class AnalysisSection(_Options):
    """How the latents are scored."""

    max_points: int = Field(20000, ge=100, description="molecules drawn in maps and scored by k-NN (seeded sample)")
    knn_k: int = Field(10, ge=1, description="neighbours of the k-NN regressor on 2-D latent coordinates")
    knn_test_fraction: float = Field(0.2, gt=0, lt=0.9, description="held-out fraction of the scored molecules for k-NN R²")
    empty_radius: float = Field(
        0.05, gt=0, lt=0.5, description="a grid point of the measured hull is empty when no molecule lies within this distance (unit-square latent)")
    grid: int = Field(200, ge=20, le=1000, description="grid points per axis for the exclusion-region measure")
    snapshots: int = Field(6, ge=1, description="DKL latent snapshots drawn in the report (evenly spaced rounds)")
    candidates: int = Field(2000, ge=0, description="latent points decoded from the GP-on-VAE's high-acquisition region (0: skip)")


class LatentSpec(_Options):
    """A whole comparison: data, VAE, campaign protocol, models and analysis."""

    name: str = Field("qm9-latent", description="study name (default output runs/<name>-<time>)")
    data: LatentData = Field(default_factory=LatentData)
    vae: VAESection = Field(default_factory=VAESection)
    campaign: CampaignSection = Field(default_factory=CampaignSection)
    models: ModelsSection = Field(default_factory=ModelsSection)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)


def load_latent_spec(path: str | Path) -> LatentSpec:
    """Read and validate a latent-comparison spec (SpecError, one line, on any problem)."""
    return validate_document(read_yaml(path), LatentSpec, origin=str(path))
