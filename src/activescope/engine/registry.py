"""One plugin mechanism for every kind of extension: models, acquisition functions, oracles,
instruments, pool sources and scalarizers.

A `Registry` maps a name to an `Entry`: a factory plus the pydantic model that validates its
options, so every section of a spec is checked the same way and errors name the field and the
allowed values. Entries come from two places:

- `@REGISTRY.register("name", Options)` in code that has been imported (a notebook, a test);
- Python entry points in the group `activescope.<kind>` (e.g. ``activescope.models``), which
  is how the CLI finds a user's installed package without importing it first. activescope's own
  built-ins are declared the same way in its ``pyproject.toml``. An entry point is loaded only
  when its name is used; if loading its target does not register it (no decorator), the target
  itself becomes the factory, with its ``Options`` attribute (or no options) as the validator.

The engine names no domain package: chemistry, microscopy and instruments arrive as entry points.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import SpecError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class NoOptions(BaseModel):
    """Options model of an entry that takes no options (any key is an error)."""

    model_config = ConfigDict(extra="forbid")


def format_validation_error(err: ValidationError) -> str:
    """One line naming the first bad field (dotted path) and what is wrong with it."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    if first["type"] == "missing":
        msg = "required field is missing"
    return f"{where}: {msg}" if where else msg


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered plugin: `factory(*context, **options) -> T` and its options model."""

    name: str
    factory: Callable[..., T]
    options: type[BaseModel]

    @property
    def summary(self) -> str:
        """First line of the factory's docstring (for listings)."""
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry(Generic[T]):
    """Named plugins of one kind.

    kind: what the names are, as written in error messages ("model kind", "data source").
    group: the entry-point group searched for installed plugins, e.g. "activescope.models".
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._entry_points: dict[str, EntryPoint] | None = None

    def register(self, name: str, options: type[BaseModel] = NoOptions) -> Callable[[F], F]:
        """Decorator: register `factory` under `name`, its keyword options validated by `options`
        (a pydantic model; give it extra="forbid" so unknown keys are errors)."""

        def wrap(factory: F) -> F:
            self.add(name, factory, options)
            return factory

        return wrap

    def add(self, name: str, factory: Callable[..., T], options: type[BaseModel] = NoOptions) -> None:
        """Register `factory` under `name` (replacing an earlier entry of that name)."""
        if not (isinstance(options, type) and issubclass(options, BaseModel)):
            raise TypeError(f"{self.kind} {name!r}: options must be a pydantic model class, got {options!r}")
        self._entries[name] = Entry(name, factory, options)

    def _installed(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def refresh(self) -> None:
        """Forget the cached entry-point list (after installing a plugin in this process)."""
        self._entry_points = None

    def names(self) -> list[str]:
        """Every name available: registered in code or installed as an entry point (not loaded)."""
        return sorted(set(self._entries) | set(self._installed()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._installed())

    def get(self, name: str) -> Entry[T]:
        """The entry called `name`, loading its entry point on first use.

        Raises ValueError "unknown `<kind>` 'x'; allowed: a, b" for a name that does not exist,
        and SpecError when an installed plugin fails to import.
        """
        if name not in self._entries:
            point = self._installed().get(name)
            if point is None:
                raise ValueError(self.unknown(name))
            try:
                target = point.load()
            except Exception as err:  # a broken third-party plugin must not crash the CLI
                raise SpecError(
                    f"{self.kind} {name!r}: plugin {point.value} failed to load: {type(err).__name__}: {err}"
                ) from None
            if name not in self._entries:
                self.add(name, target, getattr(target, "Options", NoOptions))
        return self._entries[name]

    def unknown(self, name: object) -> str:
        """The message for a name that is not registered: it lists the allowed ones."""
        return f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names()) or 'none'}"

    def validate(self, name: str, options: Mapping[str, Any], section: str) -> BaseModel:
        """The entry's options model filled from `options`. Raises ValueError with one line that
        names the spec `section` and the bad field, e.g. "model.kernel: Input should be ..."."""
        try:
            entry = self.get(name)
        except ValueError as err:
            raise ValueError(f"{section}: {err}") from None
        try:
            return entry.options.model_validate(dict(options))
        except ValidationError as err:
            raise ValueError(f"{section}.{format_validation_error(err)}") from None

    def build(
        self, name: str, options: Mapping[str, Any], *context: Any, section: str, instrument: Any = None
    ) -> T:
        """`factory(*context, **validated_options)` for the entry called `name`; a bad name or
        option raises SpecError naming `section` and the field. A factory that declares a
        keyword parameter `instrument` also gets the campaign's instrument (None without one)."""
        try:
            validated = self.validate(name, options, section)
        except ValueError as err:
            raise SpecError(str(err)) from None
        factory = self.get(name).factory
        extra = {"instrument": instrument} if _accepts_instrument(factory) else {}
        return factory(*context, **validated.model_dump(), **extra)


def _accepts_instrument(factory: Callable[..., Any]) -> bool:
    try:
        return "instrument" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


MODELS: Registry[Any] = Registry("model kind", "activescope.models")
ACQUISITIONS: Registry[Any] = Registry("acquisition kind", "activescope.acquisitions")
ORACLES: Registry[Any] = Registry("oracle kind", "activescope.oracles")
SOURCES: Registry[Any] = Registry("data source", "activescope.sources")
SCALARIZERS: Registry[Any] = Registry("scalarizer", "activescope.scalarizers")
INSTRUMENTS: Registry[Any] = Registry("instrument kind", "activescope.instruments")

register_model = MODELS.register
register_acquisition = ACQUISITIONS.register
register_oracle = ORACLES.register
register_source = SOURCES.register
register_scalarizer = SCALARIZERS.register
register_instrument = INSTRUMENTS.register
