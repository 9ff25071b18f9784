"""The YAML campaign language: valid specs load; every invalid one names its field."""

from __future__ import annotations

import pytest

from activescope.engine.errors import SpecError
from activescope.engine.spec import load_spec, parse_spec


def test_valid_spec_round_trips_through_yaml(spec_dict, write_spec):
    spec = load_spec(write_spec(spec_dict))
    assert spec.target.column == "Dipole_debye"
    assert spec.data.options()["subset"] == 600
    again = load_spec(write_spec(spec.model_dump(mode="json"), "again.yaml"))
    assert again == spec
    assert again.digest() == spec.digest()


def test_digest_changes_with_any_setting(spec_dict):
    base = parse_spec(spec_dict)
    spec_dict["acquisition"]["beta"] = 3.0
    assert parse_spec(spec_dict).digest() != base.digest()


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntarget: {column: Dipole_debye\nmodel: [\n")
    with pytest.raises(SpecError, match=r"malformed YAML at line \d+"):
        load_spec(path)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping():
    with pytest.raises(SpecError, match="expected a mapping"):
        parse_spec(["a", "b"])


@pytest.mark.parametrize(
    ("section", "patch", "expected"),
    [
        ("acquisition", {"kind": "best"}, r"acquisition\.kind: unknown acquisition kind 'best'; allowed: ei, .*ucb"),
        ("acquisition", {"kind": "ei", "beta": 2.0}, r"acquisition\.beta: unknown field"),
        ("acquisition", {"kind": "ucb", "beta": -1}, r"acquisition\.beta: Input should be greater than or equal to 0"),
        ("acquisition", {"q": 0}, r"acquisition\.q: Input should be greater than or equal to 1"),
        ("acquisition", {"colour": 1}, r"acquisition\.colour: unknown field"),
        ("target", {"goal": "up"}, r"target\.goal: Input should be 'maximize' or 'minimize'"),
        ("model", {"kind": "svm"}, r"model\.kind: unknown model kind 'svm'; allowed: .*gp"),
        ("model", {"kind": "gp", "kernel": "cosine"}, r"model\.kernel: Input should be 'matern', 'rbf' or 'tanimoto'"),
        ("model", {"kind": "rf", "n_estimators": 1}, r"model\.n_estimators: Input should be greater than or equal to 2"),
        ("data", {"source": "excel"}, r"data\.source: unknown data source 'excel'; allowed: .*qm9"),
        ("data", {"subsett": 5}, r"data\.subsett: unknown field"),
        ("oracle", {"kind": "psychic"}, r"oracle\.kind: unknown oracle kind 'psychic'; allowed: asktell, .*dataset"),
        ("oracle", {"delay_s": -1}, r"oracle\.delay_s: Input should be greater than or equal to 0"),
        ("oracle", {"scalarizer": "median"}, r"oracle\.scalarizer\.kind: unknown scalarizer 'median'; allowed: .*loop_area"),
        ("instrument", {"kind": "warp_drive"}, r"instrument\.kind: unknown instrument kind 'warp_drive'"),
        ("initial", {"method": "sobol"}, r"initial\.method: Input should be 'random' or 'diverse'"),
    ],
)
def test_invalid_field_is_named_with_allowed_values(spec_dict, section, patch, expected):
    spec_dict.setdefault(section, {}).update(patch)
    with pytest.raises(SpecError, match=expected):
        parse_spec(spec_dict)


def test_missing_target_is_named(spec_dict):
    del spec_dict["target"]
    with pytest.raises(SpecError, match="target: required field is missing"):
        parse_spec(spec_dict)


def test_budget_must_cover_the_initial_design(spec_dict):
    spec_dict["stop"]["budget"] = 5
    with pytest.raises(SpecError, match=r"stop\.budget \(5\) is smaller than initial\.n \(20\)"):
        parse_spec(spec_dict)
