"""Instrument test fixtures: every back end behind one factory fixture, a fake vendor back end,
and real instrument servers on free loopback ports.

`make_instrument` is parametrised over all back ends (twin, BEPS playback, npz cube playback,
fake vendor, remote twin over HTTP): a test using it runs once per back end and calls
`make_instrument(max_acquisitions=None)` for a fresh instrument. Test modules cannot import
this file (importlib import mode), so helpers are fixtures: `small_twin`, `fake_vendor`,
`token`, `data_dir`, `serve`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from activescope.instruments.client import RemoteInstrument
from activescope.instruments.faults import Faults
from activescope.instruments.playback import CubePlayback, PlaybackOptions, beps_playback, read_playback
from activescope.instruments.protocol import Budget, Geometry, Instrument, InstrumentInfo
from activescope.instruments.server import ServerThread
from activescope.instruments.twin import DigitalTwin, TwinOptions
from activescope.instruments.vendor import VendorBackend, VendorInstrument

DATA = Path(__file__).resolve().parents[2] / "data"
BEPS = DATA / "beps_pto_50x50.h5"
PFM = DATA / "pfm_pto_256.h5"
TOKEN = "test-token-0123456789"

# a small, fast twin: no drift, no latency (tests that need drift turn it on)
SMALL_TWIN = dict(seed=3, size=48, channels=256, latency_s=0.0, drift_velocity_nm_s=(0.0, 0.0), drift_walk_nm=0.0)


class FakeVendorBackend(VendorBackend):
    """A vendor SDK stand-in: a 40 x 32 image of Gaussian blobs at 2 nm per pixel, origin
    (100, 50) nm; a 64-channel spectrum (0 to 10 a.u.) whose peak sits at 2 + 6 x the local image
    value. Deterministic; counts calls so tests can check what reached the 'hardware'."""

    def __init__(self, budget: Budget = Budget()) -> None:
        rows, cols = np.mgrid[0:32, 0:40]
        self.image = (np.exp(-((cols - 12.0) ** 2 + (rows - 10.0) ** 2) / 30.0)
                      + 0.5 * np.exp(-((cols - 30.0) ** 2 + (rows - 22.0) ** 2) / 20.0))
        self.geometry = Geometry((32, 40), 2.0, (100.0, 50.0))
        self.budget = budget
        self.spectra = 0
        self.closed = False

    def info(self) -> InstrumentInfo:
        return InstrumentInfo(kind="fakevendor", geometry=self.geometry, axis_name="energy", axis_unit="a.u.",
                              unit="counts", channels=64, dwell_range_s=(1e-3, 1.0), default_dwell_s=0.01,
                              budget=self.budget)

    def scan(self) -> np.ndarray:
        return self.image.copy()

    def spectrum(self, x_nm: float, y_nm: float, dwell_s: float) -> tuple[np.ndarray, np.ndarray]:
        self.spectra += 1
        col, row = self.geometry.nearest_pixel(x_nm, y_nm)
        axis = np.linspace(0.0, 10.0, 64)
        centre = 2.0 + 6.0 * self.image[int(row), int(col)]
        return 1000.0 * dwell_s * np.exp(-0.5 * ((axis - centre) / 0.8) ** 2), axis

    def beam_current_pa(self) -> float:
        return 10.0

    def close(self) -> None:
        self.closed = True


def make_twin(**options) -> DigitalTwin:
    """A small twin (SMALL_TWIN, overridden by `options`)."""
    return DigitalTwin(TwinOptions(**{**SMALL_TWIN, **options}))


def write_cube(path: Path) -> Path:
    """An npz hyperspectral cube (12, 10, 20) with an energy axis and an image, at `path`."""
    rng = np.random.default_rng(0)
    cube = rng.random((12, 10, 20))
    np.savez(path, data=cube, energy=np.linspace(100.0, 119.0, 20), haadf=cube.sum(axis=2))
    return path


@pytest.fixture(scope="session")
def small_twin() -> Callable[..., DigitalTwin]:
    """`small_twin(**options)`: a fresh small twin (SMALL_TWIN overridden by options)."""
    return make_twin


@pytest.fixture(scope="session")
def fake_vendor() -> type[FakeVendorBackend]:
    """The fake vendor back end class (`FakeVendorBackend(budget=Budget())`)."""
    return FakeVendorBackend


@pytest.fixture(scope="session")
def token() -> str:
    """The token the test servers require."""
    return TOKEN


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's data directory (BEPS and PFM files)."""
    return DATA


@pytest.fixture(scope="session")
def cube_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a small npz cube (see `write_cube`)."""
    return write_cube(tmp_path_factory.mktemp("cube") / "cube.npz")


@pytest.fixture(scope="session")
def beps() -> CubePlayback:
    """The BEPS playback instrument (shared: tests must not rely on its clock)."""
    return beps_playback(BEPS)


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerThread]]:
    """Start real servers on free loopback ports: `serve(instrument, faults=None, latency_s=0)`;
    all are stopped at teardown."""
    started: list[ServerThread] = []

    def start(instrument: Instrument, faults: Faults | None = None, latency_s: float = 0.0, port: int = 0) -> ServerThread:
        server = ServerThread(instrument, TOKEN, port=port, faults=faults, latency_s=latency_s).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


BACKENDS = ["twin", "beps", "cube", "vendor", "remote"]


@pytest.fixture(params=BACKENDS)
def make_instrument(request: pytest.FixtureRequest, cube_npz: Path, serve: Callable[..., ServerThread]) -> Iterator[Callable[..., Instrument]]:
    """A factory of fresh instruments of one back end: `make(max_acquisitions=None)`."""
    made: list[Instrument] = []
    kind = request.param

    def make(max_acquisitions: int | None = None) -> Instrument:
        if kind == "twin":
            instrument: Instrument = make_twin(max_acquisitions=max_acquisitions)
        elif kind == "beps":
            instrument = beps_playback(BEPS, max_acquisitions=max_acquisitions)
        elif kind == "cube":
            instrument = read_playback(PlaybackOptions(path=str(cube_npz), cube="data", axis="energy", image="haadf",
                                                       axis_name="energy_loss", axis_unit="eV", pixel_nm=0.5,
                                                       max_acquisitions=max_acquisitions))
        elif kind == "vendor":
            instrument = VendorInstrument(FakeVendorBackend(Budget(acquisitions=max_acquisitions)))
        else:
            server = serve(make_twin(max_acquisitions=max_acquisitions))
            instrument = RemoteInstrument(server.url, TOKEN, timeout_s=5.0, retries=2, backoff_s=0.01)
        made.append(instrument)
        return instrument

    yield make
    for instrument in made:
        instrument.close()
