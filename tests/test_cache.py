"""The on-disk array cache: build once, reuse by key, atomic entries."""

import numpy as np
import pytest

from activescope.engine.cache import cache_dir, cache_key, cached_array, cached_arrays


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTIVESCOPE_CACHE", str(tmp_path / "cache"))


def _counting_build(value):
    calls = []

    def build():
        calls.append(1)
        return np.arange(value, dtype=np.float32)

    return build, calls


def test_cache_dir_follows_environment(tmp_path):
    assert cache_dir() == tmp_path / "cache"


def test_second_call_loads_instead_of_building():
    build, calls = _counting_build(5)
    first = cached_array({"what": "test", "n": 5}, build)
    second = cached_array({"n": 5, "what": "test"}, build)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32


def test_different_settings_are_different_entries():
    build, calls = _counting_build(3)
    cached_array({"what": "test", "n": 3}, build)
    cached_array({"what": "test", "n": 4}, build)
    assert len(calls) == 2
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})


def test_named_arrays_round_trip_with_strings_and_mmap():
    arrays = {"ids": np.array(["a", "bb"]), "x": np.eye(2)}
    cached_arrays({"what": "named"}, lambda: arrays)
    loaded = cached_arrays({"what": "named"}, lambda: pytest.fail("rebuilt"), mmap=True)
    assert loaded["ids"].tolist() == ["a", "bb"]
    assert isinstance(loaded["x"], np.memmap)
    np.testing.assert_array_equal(loaded["x"], np.eye(2))


def test_failed_build_leaves_no_entry():
    def broken():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached_arrays({"what": "broken"}, lambda: {"a": np.zeros(2), "b": broken()})
    with pytest.raises(TypeError):
        cached_array({"what": "objects"}, lambda: np.array([{}, []], dtype=object))
    assert not cache_dir().exists() or list(cache_dir().iterdir()) == []
    build, calls = _counting_build(2)
    cached_array({"what": "objects"}, build)
    assert len(calls) == 1
