"""The causal-learning spec: one YAML file for `activescope causal discover | select | intervene`.

Every section is a pydantic model that forbids unknown keys, so a typo is a one-line error naming
the field (exit 2), as for campaign specs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ...engine.spec import read_yaml, validate_document

DEFAULT_DESCRIPTORS = (
    "MolLogP", "MolMR", "TPSA", "NumHDonors", "NumHAcceptors", "NumHeteroatoms", "NumRotatableBonds",
    "RingCount", "FractionCSP3", "MaxPartialCharge", "MinPartialCharge", "BCUT2D_CHGHI", "BCUT2D_CHGLO",
    "BalabanJ", "BertzCT", "HallKierAlpha", "Kappa2",
)
"""Candidate causes of the target: 17 RDKit 2D descriptors with no near-duplicate among them."""


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CausalDataOptions(_Options):
    """Which QM9 molecules and variables the causal model sees."""

    target: str = Field("dipole", description="QM9 target column or alias (the graph's sink), e.g. dipole")
    descriptors: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DESCRIPTORS),
        min_length=2,
        description="RDKit 2D descriptor names (from activescope.chem.features.RDKIT2D_DESCRIPTORS) that may cause the target",
    )
    max_heavy_atoms: int = Field(
        8, ge=1, le=9, description="learn on molecules with at most this many heavy atoms; the larger ones are the design region"
    )
    pool_size: int | None = Field(None, ge=10, description="seeded random subset of the learning region (default: all of it)")
    design_size: int = Field(20000, ge=1, description="seeded random subset of the design region used for interventions")
    subset_seed: int = Field(0, description="seed of the pool and design subsets and of the test split")
    test_fraction: float = Field(
        0.2, gt=0, lt=0.9, description="fraction of the learning region held out to score the random forest's R²"
    )

    @field_validator("descriptors")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        from ..features import RDKIT2D_DESCRIPTORS

        unknown = [n for n in names if n not in RDKIT2D_DESCRIPTORS]
        if unknown:
            raise ValueError(f"unknown descriptor {unknown[0]!r}; allowed: {', '.join(RDKIT2D_DESCRIPTORS)}")
        if len(set(names)) != len(names):
            raise ValueError("a descriptor is listed twice")
        return names


class DiscoveryOptions(_Options):
    """DirectLiNGAM over the standardised descriptors and the target (the target is a sink)."""

    top_k: int = Field(9, ge=1, description="causal features kept: the descriptors with the largest |total effect| on the target")
    measure: Literal["pwling", "kernel"] = Field("pwling", description="DirectLiNGAM independence measure (kernel is far slower)")


class GraphLossOptions(_Options):
    """How two causal graphs are compared (see `graph_loss.spectral_distance`)."""

    kind: Literal["adjacency", "laplacian"] = Field(
        "adjacency", description="spectrum of the symmetrised |weighted adjacency|, or of its graph Laplacian"
    )


class SelectionOptions(_Options):
    """Active subset selection: grow a subset whose graph matches the full pool's."""

    initial: int = Field(20, ge=3, description="random molecules the subset starts from")
    batch: int = Field(20, ge=1, description="molecules added per round")
    regions: int = Field(4, ge=1, description="Gaussian-mixture regions on MolLogP/TPSA/MolMR; one candidate batch each")
    random_batches: int = Field(1, ge=0, description="extra uniformly random candidate batches per round")
    max_rounds: int = Field(40, ge=1, description="rounds after the initial subset")
    budget: int = Field(801, ge=3, description="largest subset size")
    loss_threshold: float = Field(0.1, ge=0, description="stop once the graph loss is at or below this")
    compare_seeds: int = Field(5, ge=0, description="random-growth baselines (seeds 0..n-1) run after the active selection")

    @model_validator(mode="after")
    def _budget(self) -> "SelectionOptions":
        if self.budget < self.initial:
            raise ValueError(f"budget ({self.budget}) is smaller than initial ({self.initial})")
        if self.regions + self.random_batches < 1:
            raise ValueError("give at least one candidate batch per round (regions or random_batches)")
        return self


class InterventionOptions(_Options):
    """Design by intervention: push the predicted target above a threshold, then find real molecules."""

    threshold: float = Field(3.0, description="design goal: target above this value (Debye for the dipole)")
    margin: float = Field(0.5, ge=0, description="aim the intervention this far above the threshold (target units)")
    max_shift: float = Field(3.0, gt=0, description="largest intervention, in standard deviations of the feature")
    proposals: int = Field(50, ge=1, description="molecules proposed from the design region")


class CausalSpec(_Options):
    """A whole active-causal-learning study."""

    name: str = Field("causal", description="run name (default run directory runs/<name>-<time>)")
    seed: int = Field(0, description="seeds the initial subset, the regions and every round's candidate batches")
    data: CausalDataOptions = Field(default_factory=CausalDataOptions, description="molecules and variables")
    discovery: DiscoveryOptions = Field(default_factory=DiscoveryOptions, description="causal discovery settings")
    graph_loss: GraphLossOptions = Field(default_factory=GraphLossOptions, description="graph comparison")
    selection: SelectionOptions = Field(default_factory=SelectionOptions, description="active subset selection")
    intervention: InterventionOptions = Field(default_factory=InterventionOptions, description="design by intervention")

    @model_validator(mode="after")
    def _enough_descriptors(self) -> "CausalSpec":
        if self.discovery.top_k > len(self.data.descriptors):
            raise ValueError(f"discovery.top_k ({self.discovery.top_k}) exceeds the {len(self.data.descriptors)} descriptors")
        return self

    def digest(self) -> str:
        """Stable hash of the spec's content (a run refuses to resume under another spec)."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The spec as YAML, every default filled in."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_causal_spec(data: object, origin: str = "spec") -> CausalSpec:
    """Validate a causal spec mapping; SpecError with one line naming the bad field."""
    return validate_document(data, CausalSpec, origin)


def load_causal_spec(path: str | Path) -> CausalSpec:
    """Read and validate a causal YAML spec file."""
    return parse_causal_spec(read_yaml(path), origin=str(path))
