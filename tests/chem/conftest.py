"""One temporary cache for the chemistry tests, so QM9 is parsed once per test session."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def chem_cache(tmp_path_factory):
    previous = os.environ.get("ACTIVESCOPE_CACHE")
    path = tmp_path_factory.mktemp("chem_cache")
    os.environ["ACTIVESCOPE_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("ACTIVESCOPE_CACHE")
    else:
        os.environ["ACTIVESCOPE_CACHE"] = previous
