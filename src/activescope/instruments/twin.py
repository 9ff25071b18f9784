"""A seedable, deterministic digital twin of a STEM-EELS experiment.

The specimen (`sample.build_sample`) is a simulated atomic lattice with vacancies, dopants, a
grain boundary and a hole. The twin answers the instrument protocol:

- **overview**: the HAADF image of the field of view at the current stage drift, with Poisson
  shot noise (`overview_counts` expected counts per pixel at full intensity), darkened where the
  beam has damaged the sample;
- **acquire**: a low-loss EELS spectrum on an energy axis (eV): a power-law background, a
  plasmon peak and a dopant core-loss edge, in counts with Poisson noise. The local structure at
  the probed position sets the peak: it shifts by `shift_defect_ev` where columns are missing
  (vacancies, the hole's edge), by `shift_dopant_ev` on dopants and by `shift_boundary_ev` on
  the grain boundary, it broadens near defects, and its intensity follows the local column
  density (none in vacuum). The dopant edge's height follows the dopant map.
- **beam shift** (`beam_shift_nm`): the probe reaches that far beyond the field of view, onto the
  simulated sample around it, so drift correction can follow a feature out of the overview;
- **drift**: the beam lands on ``requested + drift(t)``, where drift has a linear part
  (`drift_velocity_nm_s`) and a random walk (`drift_walk_nm` per axis after one second), on the
  instrument clock t (dwell, overhead, latency and overview scans), so it is reproducible;
- **beam damage** (`damage: true`): each acquisition deposits its electrons in a Gaussian spot
  on a dose map; the damaged fraction ``1 - exp(-dose / critical_dose)`` lowers and shifts the
  plasmon peak and darkens the overview.

Every random draw comes from generators seeded by `seed` and a counter (overview number,
acquisition number), so the same seed and the same sequence of requests give the same results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import ndimage

from activescope.engine.registry import register_instrument

from .base import InstrumentBase
from .protocol import ELECTRON_C, Budget, Geometry, InstrumentInfo
from .sample import build_sample


class TwinOptions(BaseModel):
    """Options of the STEM-EELS digital twin (the `instrument:` section with `kind: twin`)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="seeds the sample, the noise and the drift")
    lattice: str = Field("graphene", description="crystal lattice of the sample: graphene, mos2, ws2 or srtio3")
    size: int = Field(128, ge=32, le=1024, description="overview image side, pixels")
    pixel_nm: float = Field(0.025, gt=0.005, le=0.2, description="overview pixel size, nm")
    vacancy_prob: float = Field(0.03, ge=0, le=0.5, description="probability that an atom is missing")
    dopant_prob: float = Field(0.02, ge=0, le=0.5, description="probability that a dopant-site atom is a dopant")
    grain_boundary: bool = Field(True, description="join two randomly oriented grains along a line")
    hole_radius_nm: float = Field(0.3, ge=0, description="radius of a vacuum hole (edges) in the central region, nm; 0 = none")
    e_min_ev: float = Field(5.0, gt=0, description="first energy-loss channel, eV")
    e_max_ev: float = Field(45.0, gt=0, description="last energy-loss channel, eV")
    channels: int = Field(1024, ge=16, le=16384, description="points per spectrum")
    plasmon_ev: float = Field(22.0, gt=0, description="plasmon peak position in the perfect lattice, eV")
    plasmon_width_ev: float = Field(3.0, gt=0, description="plasmon peak standard deviation in the perfect lattice, eV")
    shift_defect_ev: float = Field(-3.0, description="peak shift where columns are missing (vacancies, edges), eV")
    shift_dopant_ev: float = Field(2.0, description="peak shift on a dopant, eV")
    shift_boundary_ev: float = Field(-1.5, description="peak shift on the grain boundary, eV")
    edge_ev: float = Field(35.0, gt=0, description="onset of the dopant core-loss edge, eV")
    edge_strength: float = Field(0.3, ge=0, description="edge height on a dopant, relative to the plasmon peak")
    background: float = Field(0.5, ge=0, description="power-law background at e_min_ev, relative to the plasmon peak")
    counts_per_s: float = Field(1e5, gt=0, description="expected counts per second in the plasmon peak channel of the perfect lattice")
    overview_counts: float = Field(50.0, gt=0, description="expected counts per overview pixel at full intensity (shot noise)")
    beam_current_pa: float = Field(20.0, gt=0, description="probe current, pA (sets the dose)")
    probe_sigma_nm: float = Field(0.05, gt=0, description="probe standard deviation for the dose map, nm")
    drift_velocity_nm_s: tuple[float, float] = Field((0.01, 0.005), description="linear stage drift (x, y), nm/s")
    drift_walk_nm: float = Field(0.005, ge=0, description="random-walk drift: std per axis after one second, nm")
    beam_shift_nm: float = Field(
        0.0, ge=0, description="how far beyond the field of view the probe can be placed (beam shift), nm; at most the sample's margin, size // 4 pixels")
    damage: bool = Field(False, description="simulate beam damage from the accumulated dose map")
    critical_dose_e_nm2: float = Field(1e9, gt=0, description="dose at which 63 % of the structure is damaged, electrons/nm^2")
    shift_damage_ev: float = Field(-2.0, description="peak shift of fully damaged material, eV")
    dwell_s: float = Field(0.01, gt=0, description="default dwell per spectrum, s")
    max_dwell_s: float = Field(10.0, gt=0, description="longest dwell accepted, s")
    overhead_s: float = Field(0.05, ge=0, description="instrument seconds per acquisition besides dwell (beam move, settle)")
    overview_s: float = Field(2.0, ge=0, description="instrument seconds per overview scan")
    latency_s: float = Field(0.001, ge=0, description="real seconds slept per acquisition (simulated latency)")
    time_budget_s: float | None = Field(None, gt=0, description="instrument time budget, s (none: unlimited)")
    dose_budget_e: float | None = Field(None, gt=0, description="dose budget, electrons (none: unlimited)")
    max_acquisitions: int | None = Field(None, ge=1, description="acquisition budget, spectra (none: unlimited)")

    @field_validator("lattice")
    @classmethod
    def _known_lattice(cls, value: str) -> str:
        from activescope.microscopy import LATTICES

        if value not in LATTICES:
            raise ValueError(f"unknown lattice {value!r}; allowed: {', '.join(LATTICES)}")
        return value

    @field_validator("beam_shift_nm")
    @classmethod
    def _within_sample(cls, value: float, info: Any) -> float:
        size, pixel_nm = info.data.get("size", 128), info.data.get("pixel_nm", 0.025)
        margin_nm = (size // 4) * pixel_nm
        if value > margin_nm:
            raise ValueError(f"beam_shift_nm must be at most the simulated sample's margin around the field of view, "
                             f"{margin_nm:g} nm (size // 4 pixels), got {value:g}")
        return value

    @field_validator("e_max_ev")
    @classmethod
    def _energy_range(cls, value: float, info: Any) -> float:
        if value <= info.data.get("e_min_ev", 0.0):
            raise ValueError("e_max_ev must be larger than e_min_ev")
        return value


class DriftModel:
    """Stage drift (x, y) in nm at instrument time t: ``velocity * t + random walk``.

    The walk is sampled on a fixed time grid (`step_s`) in blocks drawn in order from a seeded
    generator and interpolated linearly, so drift(t) does not depend on which times were asked.
    velocity_nm_s: (vx, vy), nm/s. walk_nm: std per axis after one second, nm.
    """

    def __init__(self, velocity_nm_s: tuple[float, float], walk_nm: float, seed: int, step_s: float = 0.1) -> None:
        self._velocity = np.asarray(velocity_nm_s, dtype=float)
        self._step_std = walk_nm * np.sqrt(step_s)
        self._step_s = step_s
        self._rng = np.random.default_rng([seed, 3])
        self._walk = np.zeros((1, 2))

    def __call__(self, t_s: float) -> np.ndarray:
        """(dx, dy) drift in nm at instrument time t_s (seconds, >= 0)."""
        k = max(t_s, 0.0) / self._step_s
        i = int(k)
        while len(self._walk) < i + 2:
            steps = self._rng.normal(0.0, self._step_std, (4096, 2))
            self._walk = np.concatenate([self._walk, self._walk[-1] + np.cumsum(steps, axis=0)])
        frac = k - i
        return self._velocity * t_s + (1.0 - frac) * self._walk[i] + frac * self._walk[i + 1]


class DigitalTwin(InstrumentBase):
    """The STEM-EELS digital twin (see the module docstring).

    options: its `TwinOptions`. Attributes for benchmarks and diagnostics (a real instrument has
    none of them): `sample` (the specimen and its structure maps), `drift` (the `DriftModel`:
    ``drift(t)`` in nm at instrument time t in seconds) and `truth_maps()`.
    """

    channel = "haadf"
    image_unit = "counts/pixel"

    def __init__(self, options: TwinOptions) -> None:
        o = options
        self.options = o
        self.sample = build_sample(o.lattice, o.size, o.pixel_nm, o.vacancy_prob, o.dopant_prob,
                                   o.grain_boundary, o.hole_radius_nm, o.seed)
        info = InstrumentInfo(
            kind="twin", geometry=Geometry((o.size, o.size), o.pixel_nm, (0.0, 0.0), o.beam_shift_nm), axis_name="energy_loss",
            axis_unit="eV", unit="counts", channels=o.channels, dwell_range_s=(1e-4, o.max_dwell_s),
            default_dwell_s=o.dwell_s, budget=Budget(o.time_budget_s, o.dose_budget_e, o.max_acquisitions))
        super().__init__(info, latency_s=o.latency_s, overhead_s=o.overhead_s, overview_s=o.overview_s)
        self._axis = np.linspace(o.e_min_ev, o.e_max_ev, o.channels)
        self._axis.setflags(write=False)
        self.drift = DriftModel(o.drift_velocity_nm_s, o.drift_walk_nm, o.seed)
        self._dose_map = np.zeros(self.sample.shape, dtype=np.float64)  # electrons / nm^2
        self._scans = 0
        self._shots = 0
        half = int(np.ceil(4.0 * o.probe_sigma_nm / o.pixel_nm))
        offsets = np.arange(-half, half + 1)
        spot = np.exp(-0.5 * (offsets * o.pixel_nm / o.probe_sigma_nm) ** 2)
        self._spot_offsets = offsets
        self._spot = np.outer(spot, spot) / (np.outer(spot, spot).sum() * o.pixel_nm**2)  # per electron, 1/nm^2
        rows, cols = np.mgrid[0:o.size, 0:o.size].astype(np.float64)
        self._grid = (rows + self.sample.margin, cols + self.sample.margin)

    @property
    def axis(self) -> np.ndarray:
        """(channels,) energy-loss axis, eV."""
        return self._axis

    def _electrons_per_s(self) -> float:
        return self.options.beam_current_pa * 1e-12 / ELECTRON_C

    def _dose_e(self, dwell_s: float) -> float:
        return self._electrons_per_s() * dwell_s

    def _overview_dose_e(self) -> float:
        return self._electrons_per_s() * self.options.overview_s

    def _drift_nm(self, t_s: float) -> tuple[float, float]:
        dx, dy = self.drift(t_s)
        return float(dx), float(dy)

    def _damage(self) -> np.ndarray:
        """Damaged fraction of the structure per canvas pixel, in [0, 1)."""
        return -np.expm1(-self._dose_map / self.options.critical_dose_e_nm2)

    def _scan(self, t_s: float) -> np.ndarray:
        o = self.options
        dx, dy = self.drift(t_s)
        image = self.sample.image * (1.0 - 0.7 * self._damage()) if o.damage else self.sample.image
        rows, cols = self._grid
        clean = ndimage.map_coordinates(image, np.stack([rows + dy / o.pixel_nm, cols + dx / o.pixel_nm]),
                                        order=1, mode="grid-wrap")
        rng = np.random.default_rng([o.seed, 1, self._scans])
        self._scans += 1
        if o.damage:
            self._dose_map += self._overview_dose_e() / (o.size * o.pixel_nm) ** 2
        return rng.poisson(np.clip(clean, 0.0, None) * o.overview_counts).astype(np.float32)

    def _canvas_position(self, x_nm: Any, y_nm: Any, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Fractional canvas (row, col) probed at requested (x_nm, y_nm) at time t_s."""
        dx, dy = self.drift(t_s)
        m = self.sample.margin
        p = self.options.pixel_nm
        return m + (np.asarray(y_nm) + dy) / p, m + (np.asarray(x_nm) + dx) / p

    def expected_counts(self, local: dict[str, np.ndarray], dwell_s: float) -> np.ndarray:
        """Noise-free spectra, counts, shape (..., channels), from local structure values (arrays
        of one shape: density, dopant, boundary, and optionally damage in [0, 1])."""
        o = self.options
        density, dopant, boundary = (np.asarray(local[k], dtype=float)[..., None] for k in ("density", "dopant", "boundary"))
        damage = np.asarray(local.get("damage", 0.0), dtype=float)[..., None]
        defect = np.clip(1.0 - density, 0.0, 1.0)
        centre = (o.plasmon_ev + o.shift_defect_ev * defect + o.shift_dopant_ev * dopant
                  + o.shift_boundary_ev * boundary + o.shift_damage_ev * damage)
        width = o.plasmon_width_ev * (1.0 + 0.5 * defect + 0.5 * damage)
        e = self._axis
        plasmon = np.minimum(density, 1.0) * (1.0 - 0.5 * damage) * np.exp(-0.5 * ((e - centre) / width) ** 2)
        edge = o.edge_strength * dopant / (1.0 + np.exp(-(e - o.edge_ev) / 0.3)) * np.exp(-np.clip(e - o.edge_ev, 0.0, None) / 8.0)
        background = o.background * (e / o.e_min_ev) ** -3.0
        return o.counts_per_s * dwell_s * (plasmon + edge + background)

    def _measure(self, x_nm: float, y_nm: float, dwell_s: float, t_s: float) -> tuple[np.ndarray, dict[str, Any]]:
        o = self.options
        row, col = self._canvas_position(x_nm, y_nm, t_s + dwell_s / 2.0)
        extra = {"damage": self._damage()} if o.damage else None
        local = self.sample.sample_maps(np.atleast_1d(row), np.atleast_1d(col), extra)
        counts = self.expected_counts(local, dwell_s)[0]
        rng = np.random.default_rng([o.seed, 2, self._shots])
        self._shots += 1
        if o.damage:
            self._expose(float(row), float(col), self._dose_e(dwell_s))
        return rng.poisson(counts).astype(np.float64), {"acquisition": self._shots}

    def _expose(self, row: float, col: float, electrons: float) -> None:
        """Add `electrons` in a Gaussian probe spot centred at canvas (row, col) to the dose map."""
        h, w = self.sample.shape
        rows = (int(round(row)) + self._spot_offsets) % h
        cols = (int(round(col)) + self._spot_offsets) % w
        self._dose_map[np.ix_(rows, cols)] += electrons * self._spot

    def truth_maps(self) -> dict[str, np.ndarray]:
        """Noise-free ground truth on the overview grid without drift or damage, (size, size)
        each: local ``density``, ``dopant`` and ``boundary`` and the plasmon peak position
        ``plasmon_ev`` (eV) they imply; for benchmarks that score reconstructed maps."""
        o = self.options
        rows, cols = self._grid
        local = self.sample.sample_maps(rows, cols)
        defect = np.clip(1.0 - local["density"], 0.0, 1.0)
        local["plasmon_ev"] = (o.plasmon_ev + o.shift_defect_ev * defect + o.shift_dopant_ev * local["dopant"]
                               + o.shift_boundary_ev * local["boundary"])
        return local


@register_instrument("twin", TwinOptions)
def twin(**options: Any) -> DigitalTwin:
    """STEM-EELS digital twin: simulated lattice with defects, dopants, a grain boundary and a
    hole; structure-dependent spectra with shot noise, stage drift and optional beam damage."""
    return DigitalTwin(TwinOptions(**options))
