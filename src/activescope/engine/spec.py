"""The declarative campaign language: a YAML file validated by pydantic models.

One spec describes a campaign for any back end. Every pluggable section names a registered entry
(`data.source`, `model.kind`, `acquisition.kind`, `oracle.kind`, `oracle.scalarizer.kind`) and
its other keys are validated by that entry's own options model (see `registry`), so a third-party
plugin's options are checked exactly like the built-ins'. Validation errors are one line naming
the bad field and the allowed values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SpecError
from .registry import ACQUISITIONS, INSTRUMENTS, MODELS, ORACLES, SCALARIZERS, SOURCES, Registry, format_validation_error

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Pluggable(BaseModel):
    """A section naming a registered entry: keys other than the declared fields are that entry's
    options, validated by its own options model."""

    model_config = ConfigDict(extra="allow")

    def options(self) -> dict[str, Any]:
        """The entry's options: every key of the section that is not a declared field."""
        return dict(self.model_extra or {})


class DataSpec(_Pluggable):
    """Where candidates come from: `source` is a registered pool source (e.g. qm9, csv); every
    other key is an option of that source."""

    source: str = Field(description="registered pool source, e.g. qm9 or csv")


class TargetSpec(_Strict):
    """The measured quantity and whether to maximise or minimise it."""

    column: str = Field(description="label column (dataset oracle) or name of the measured quantity")
    goal: Literal["maximize", "minimize"] = Field("maximize", description="maximize or minimize the target")


class ModelSpec(_Pluggable):
    """The surrogate: `kind` is a registered model (gp, dkl, rf, deep_ensemble, ...); other keys
    are its options."""

    kind: str = Field("dkl", description="registered surrogate model")


class AcquisitionSpec(_Pluggable):
    """How the next batch is chosen: `kind` is a registered acquisition function (ei, logei, ucb,
    max_variance, thompson, greedy, random, raster); other keys are its options (beta for ucb
    and thompson, xi for ei and logei). `random` draws uniformly and `raster` scans the pool in
    order, both without a model (the baselines)."""

    kind: str = Field("ucb", description="registered acquisition function")
    q: int = Field(10, ge=1, description="batch size per round")
    prefilter: int = Field(
        2000, ge=1, description="batch selection works on the top-`prefilter` candidates by the single-point score"
    )


class InitialSpec(_Strict):
    """The initial design, measured before any model is fitted."""

    n: int = Field(50, ge=1, description="candidates measured in round 0")
    method: Literal["random", "diverse"] = Field(
        "random", description="random, or diverse (greedy farthest-point in feature space)"
    )


class ScalarizerSpec(_Pluggable):
    """Reduces a raw signal (spectrum, loop) to y: `kind` is a registered scalarizer; other keys
    are its options. A bare name (`scalarizer: loop_area`) is short for `{kind: loop_area}`."""

    kind: str = Field(description="registered scalarizer")


class OracleSpec(_Pluggable):
    """How to measure: `kind` is a registered oracle (dataset looks values up in the pool's
    labels, asktell exchanges results with a lab; instrument back ends add more); other keys are
    its options."""

    kind: str = Field("dataset", description="registered oracle or instrument")
    max_retries: int = Field(2, ge=0, description="retries of a failed measurement before it is recorded as failed")
    scalarizer: ScalarizerSpec | None = Field(None, description="reduces a raw signal (spectrum) to y")

    @field_validator("scalarizer", mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


class InstrumentSpec(_Pluggable):
    """The instrument a campaign drives (a digital twin, recorded data, a remote or vendor
    microscope): `kind` is a registered instrument; other keys are its options. The pool source
    and the oracle share it, so changing this one section moves a campaign from the twin to a
    real instrument."""

    kind: str = Field(description="registered instrument back end")


class StopSpec(_Strict):
    """When the campaign ends (the first rule that holds)."""

    budget: int = Field(500, ge=1, description="total measurements, the initial design included")
    max_rounds: int | None = Field(None, ge=1, description="rounds after the initial design")
    target_value: float | None = Field(None, description="stop once the best value reaches this")


_PLUGGABLE: tuple[tuple[str, str, Registry[Any]], ...] = (
    ("data", "source", SOURCES),
    ("model", "kind", MODELS),
    ("acquisition", "kind", ACQUISITIONS),
    ("oracle", "kind", ORACLES),
    ("instrument", "kind", INSTRUMENTS),
)


class CampaignSpec(_Strict):
    """A whole campaign: what to choose from, what to measure, how to model and choose, and when
    to stop."""

    name: str = Field("campaign", description="run name (default run directory runs/<name>-<time>)")
    seed: int = Field(0, description="seeds the initial design, every round's choices and the models")
    data: DataSpec | None = Field(None, description="pool source; omit it when the pool is given in Python")
    target: TargetSpec = Field(description="what is measured and whether to maximise or minimise it")
    model: ModelSpec = Field(default_factory=ModelSpec, description="the surrogate model")
    acquisition: AcquisitionSpec = Field(default_factory=AcquisitionSpec, description="how each batch is chosen")
    initial: InitialSpec = Field(default_factory=InitialSpec, description="the model-free first batch")
    oracle: OracleSpec = Field(default_factory=OracleSpec, description="how candidates are measured")
    instrument: InstrumentSpec | None = Field(None, description="instrument shared by the pool source and the oracle")
    stop: StopSpec = Field(default_factory=StopSpec, description="when the campaign ends")

    @model_validator(mode="after")
    def _plugins_accept_options(self) -> "CampaignSpec":
        for section, key, registry in _PLUGGABLE:
            part = getattr(self, section)
            if part is None:
                continue
            if getattr(part, key) not in registry:
                raise ValueError(f"{section}.{key}: {registry.unknown(getattr(part, key))}")
            registry.validate(getattr(part, key), part.options(), section)
        scalarizer = self.oracle.scalarizer
        if scalarizer is not None:
            if scalarizer.kind not in SCALARIZERS:
                raise ValueError(f"oracle.scalarizer.kind: {SCALARIZERS.unknown(scalarizer.kind)}")
            SCALARIZERS.validate(scalarizer.kind, scalarizer.options(), "oracle.scalarizer")
        return self

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
        """The spec as YAML (every default filled in)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def override_section(current: BaseModel | None, values: dict[str, Any]) -> dict[str, Any]:
    """The mapping of a spec section (e.g. `spec.acquisition`) with `values` laid over it. When
    `values` names another `kind`, the old kind's own options are dropped and the section's
    common fields (such as the batch size q) are kept: the old options would not fit the new kind."""
    merged = current.model_dump(mode="json") if current is not None else {}
    kind = merged.get("kind")
    if kind is not None and values.get("kind", kind) != kind:
        merged = {k: v for k, v in merged.items() if k in type(current).model_fields and k != "kind"}
    return {**merged, **values}


def validate_document(data: object, model: type[ModelT], origin: str = "spec") -> ModelT:
    """Validate a parsed YAML document against a pydantic model (a campaign spec, or a domain
    package's own spec kind); SpecError with a one-line message naming the bad field."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{origin}: {format_validation_error(err)}") from None


def read_yaml(path: str | Path) -> object:
    """The YAML document in a file; SpecError with one line when it is missing, unreadable, not
    UTF-8 text or malformed."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not a UTF-8 text file (byte {err.start} is 0x{err.object[err.start]:02x}); expected a YAML spec") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None


def parse_spec(data: dict[str, Any], origin: str = "spec") -> CampaignSpec:
    """Validate a spec mapping; raise SpecError with a one-line message naming the bad field."""
    return validate_document(data, CampaignSpec, origin)


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate a YAML spec file."""
    return parse_spec(read_yaml(path), origin=str(path))
