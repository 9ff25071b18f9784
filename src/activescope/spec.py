"""The declarative campaign language: a YAML file validated by pydantic models.

One spec describes a campaign for any back end: the data section names a registered pool source
(its options are validated by that source's own model), the oracle section names how to measure.
Validation errors name the bad field and the allowed values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SpecError

AcquisitionKind = Literal["ei", "logei", "ucb", "max_variance", "thompson", "greedy", "random"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(BaseModel):
    """Where candidates come from. `source` is a registered pool source (e.g. qm9, csv); every
    other key is an option of that source and is validated by it."""

    model_config = ConfigDict(extra="allow")
    source: str = "qm9"

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TargetSpec(_Strict):
    column: str = Field(description="label column (dataset oracle) or name of the measured quantity")
    goal: Literal["maximize", "minimize"] = "maximize"


class ModelSpec(BaseModel):
    """Surrogate: `kind` is a registered model; other keys are passed to its constructor."""

    model_config = ConfigDict(extra="allow")
    kind: str = "dkl"

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AcquisitionSpec(_Strict):
    """How the next batch is chosen. `random` draws uniformly without a model (the baseline)."""

    kind: AcquisitionKind = "ucb"
    beta: float = Field(2.0, ge=0, description="UCB exploration weight (mean + sqrt(beta) * std)")
    xi: float = Field(0.0, ge=0, description="EI improvement margin, in target units")
    q: int = Field(10, ge=1, description="batch size per round")
    prefilter: int = Field(
        2000, ge=1, description="batch selection works on the top-`prefilter` candidates by the single-point score"
    )


class InitialSpec(_Strict):
    n: int = Field(50, ge=1)
    method: Literal["random", "diverse"] = "random"


class OracleSpec(BaseModel):
    """How to measure: `dataset` looks values up in the pool's labels, `asktell` exchanges CSV
    files with a lab. Other keys go to the oracle (instrument back ends register more kinds)."""

    model_config = ConfigDict(extra="allow")
    kind: str = "dataset"
    max_retries: int = Field(2, ge=0, description="retries of a failed measurement before it is recorded as failed")
    scalarizer: str | None = Field(None, description="reduces a raw signal (spectrum) to y")

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StopSpec(_Strict):
    budget: int = Field(500, ge=1, description="total measurements, the initial design included")
    max_rounds: int | None = Field(None, ge=1)
    target_value: float | None = Field(None, description="stop once the best value reaches this")


class CampaignSpec(_Strict):
    name: str = "campaign"
    seed: int = 0
    data: DataSpec = Field(default_factory=DataSpec)
    target: TargetSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    acquisition: AcquisitionSpec = Field(default_factory=AcquisitionSpec)
    initial: InitialSpec = Field(default_factory=InitialSpec)
    oracle: OracleSpec = Field(default_factory=OracleSpec)
    stop: StopSpec = Field(default_factory=StopSpec)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: ModelSpec) -> ModelSpec:
        from .models import model_names

        names = model_names()
        if v.kind not in names:
            raise ValueError(f"unknown model kind {v.kind!r}; allowed: {', '.join(names)}")
        return v

    @field_validator("data")
    @classmethod
    def _known_source(cls, v: DataSpec) -> DataSpec:
        from .sources import source_names, validate_source_options

        names = source_names()
        if v.source not in names:
            raise ValueError(f"unknown data source {v.source!r}; allowed: {', '.join(names)}")
        try:
            validate_source_options(v.source, v.options())
        except ValidationError as err:
            raise ValueError(format_validation_error(err)) from None
        return v

    @field_validator("oracle")
    @classmethod
    def _known_oracle(cls, v: OracleSpec) -> OracleSpec:
        from .oracle import scalarizer_names
        from .oracles import validate_oracle_options

        validate_oracle_options(v.kind, v.options())
        if v.scalarizer is not None and v.scalarizer not in scalarizer_names():
            raise ValueError(f"unknown scalarizer {v.scalarizer!r}; allowed: {', '.join(scalarizer_names())}")
        return v

    @model_validator(mode="after")
    def _budget_covers_initial(self) -> "CampaignSpec":
        if self.stop.budget < self.initial.n:
            raise ValueError(f"stop.budget ({self.stop.budget}) is smaller than initial.n ({self.initial.n})")
        return self

    def digest(self) -> str:
        """Stable hash of the spec's content, used to refuse resuming with a different spec."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def format_validation_error(err: ValidationError) -> str:
    """One line naming the first bad field (dotted path) and what is wrong with it."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "spec"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    if first["type"] == "missing":
        msg = "required field is missing"
    return f"{where}: {msg}"


def parse_spec(data: dict[str, Any], origin: str = "spec") -> CampaignSpec:
    """Validate a spec mapping; raise SpecError with a one-line message naming the bad field."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{origin}: {format_validation_error(err)}") from None


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a YAML spec file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None
    return parse_spec(data, origin=str(path))
