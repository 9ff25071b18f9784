"""The command line through its real entry point (typer's CliRunner on activescope.cli.app)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_helpers import assert_user_error, dump_db, invoke

from activescope.cli import preset_names
from activescope.engine.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "resume", "suggest", "tell", "report", "bench", "presets"):
        assert command in result.output


def test_help_imports_no_heavy_module():
    code = (
        "import sys\nfrom activescope.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('heavy:', [m for m in ('torch', 'rdkit', 'pandas', 'scipy', 'activescope.microscopy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "atoms" in out and out.strip().endswith("heavy: []")


def test_microscopy_commands_load_on_demand(tmp_path):
    assert "atoms" in invoke("bench", "--help").output
    assert "simulate" in invoke("atoms", "--help").output
    assert_user_error(invoke("atoms", "find", tmp_path / "missing.npy", "--model", tmp_path / "m"), "missing.npy")


def test_presets_list_and_show():
    listing = invoke("presets")
    assert listing.exit_code == 0 and "qm9-dipole-quick" in listing.output
    defaults = [line.split()[0] for line in listing.output.splitlines() if "(default)" in line]
    assert defaults == ["qm9-dipole"]
    assert {"qm9-dipole", "qm9-dipole-quick"} <= set(preset_names())
    for name in preset_names():
        shown = invoke("presets", "show", name)
        assert shown.exit_code == 0
        assert parse_spec(yaml.safe_load(shown.output)).name == name
    assert_user_error(invoke("presets", "show", "nope"), "unknown preset 'nope'", "qm9-dipole")


def test_run_prints_a_summary(tmp_path, spec_dict, write_spec):
    spec_dict["stop"]["budget"] = 40
    result = invoke("run", write_spec(spec_dict), "--run-dir", tmp_path / "run", "--no-report", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "40 measured" in result.output and "top-100 recall:" in result.output and "top-1% recall:" in result.output
    assert f"run directory: {tmp_path / 'run'}" in result.output
    with sqlite3.connect(tmp_path / "run" / "run.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 40


def test_run_into_the_same_directory_resumes_a_finished_run(finished_run, tmp_path, spec_dict, write_spec):
    spec_dict["stop"]["budget"] = 40
    before = dump_db(finished_run)
    result = invoke("run", write_spec(spec_dict), "--run-dir", finished_run, "--no-report", "--no-progress")
    assert result.exit_code == 0 and "finished (budget)" in result.output
    assert dump_db(finished_run) == before


def test_resume_with_another_spec_changes_nothing(finished_run, spec_dict, write_spec):
    spec_dict["stop"]["budget"] = 50
    before = dump_db(finished_run)
    other = write_spec(spec_dict, "other.yaml")
    assert_user_error(invoke("resume", finished_run, "--spec", other, "--no-report"), "different spec")
    assert_user_error(invoke("run", other, "--run-dir", finished_run, "--no-report"), "different spec")
    assert dump_db(finished_run) == before


def test_report_command_writes_html(finished_run):
    result = invoke("report", finished_run)
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip().splitlines()[-1])
    assert path.suffix == ".html" and path.is_file()


def test_malformed_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("target: {column: Dipole_debye\nstop: [\n")
    assert_user_error(invoke("run", path, "--run-dir", tmp_path / "r"), "malformed YAML at line")
    assert not (tmp_path / "r").exists()


def test_invalid_field_names_allowed_values(tmp_path, spec_dict, write_spec):
    spec_dict["acquisition"]["kind"] = "bestest"
    assert_user_error(invoke("run", write_spec(spec_dict), "--run-dir", tmp_path / "r"), "acquisition.kind", "ucb")


def test_unknown_target_column(tmp_path, spec_dict, write_spec):
    spec_dict["target"]["column"] = "dipole_moment_xyz"
    result = invoke("run", write_spec(spec_dict), "--run-dir", tmp_path / "r")
    assert_user_error(result, "dipole_moment_xyz", "Dipole_debye")
    assert not (tmp_path / "r").exists()


def test_budget_larger_than_pool(tmp_path, spec_dict, write_spec):
    spec_dict["stop"]["budget"] = 10_000
    assert_user_error(invoke("run", write_spec(spec_dict), "--run-dir", tmp_path / "r"), "stop.budget (10000)", "600")


def test_invalid_smiles_in_a_strict_user_pool(tmp_path, write_spec):
    molecules = tmp_path / "mine.csv"
    molecules.write_text("name,smiles\nethanol,CCO\nbroken_ring,C1CC\nbenzene,c1ccccc1\nethylamine,CCN\n")
    spec = {
        "data": {"source": "csv", "path": str(molecules), "id_column": "name", "strict": True, "features": ["rdkit2d"]},
        "target": {"column": "yield"},
        "model": {"kind": "rf"},
        "oracle": {"kind": "asktell"},
        "initial": {"n": 2},
        "stop": {"budget": 3},
    }
    assert_user_error(invoke("run", write_spec(spec), "--run-dir", tmp_path / "r"), "invalid SMILES", "broken_ring")


def _fill(path: Path, value_of) -> None:
    batch = pd.read_csv(path, dtype={"id": str})
    batch["value"] = batch["smiles"].map(value_of)
    batch.to_csv(path, index=False)


def test_ask_tell_round_trip_on_the_example(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "lab"
    first = invoke("run", "examples/csv_asktell.yaml", "--run-dir", run_dir, "--no-report", "--no-progress")
    assert first.exit_code == 0, first.output
    path = run_dir / "artifacts" / "suggest_round_0.csv"
    assert f"suggestions: {path}" in first.output
    assert invoke("suggest", run_dir).output.strip() == str(path)

    def score(smiles: str) -> float:  # the "lab": more heteroatoms, higher value
        return float(sum(smiles.count(a) for a in "NO")) + 0.1 * len(smiles)

    told = 0
    while path is not None:
        _fill(path, score)
        told += len(pd.read_csv(path))
        result = invoke("tell", run_dir, path)
        assert result.exit_code == 0, result.output
        lines = [line for line in result.output.splitlines() if line.startswith("suggestions: ")]
        path = Path(lines[0].removeprefix("suggestions: ")) if lines else None
    assert told == 18
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        assert db.execute("SELECT COUNT(DISTINCT id), COUNT(*) FROM measurements").fetchone() == (18, 18)
    assert_user_error(invoke("suggest", run_dir), "the campaign is over (budget)")


@pytest.mark.parametrize(
    ("bad_value", "bad_id", "message"),
    [
        ("nan", None, "NaN or infinite"),
        ("inf", None, "NaN or infinite"),
        (None, "mol_unknown", "unknown id(s) mol_unknown"),
    ],
)
def test_tell_rejects_bad_results_atomically(tmp_path, monkeypatch, bad_value, bad_id, message):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "lab"
    started = invoke("run", "examples/csv_asktell.yaml", "--run-dir", run_dir, "--no-report", "--no-progress")
    assert started.exit_code == 0
    path = run_dir / "artifacts" / "suggest_round_0.csv"
    batch = pd.read_csv(path, dtype={"id": str})
    batch["value"] = 1.0
    if bad_value is not None:
        batch.loc[2, "value"] = float(bad_value)
    if bad_id is not None:
        batch.loc[2, "id"] = bad_id
    batch.to_csv(path, index=False)
    before = dump_db(run_dir)
    result = invoke("tell", run_dir, path)
    assert_user_error(result, message, bad_id or str(batch.loc[2, "id"]))
    assert dump_db(run_dir) == before


def test_tell_rejects_ids_not_suggested(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "lab"
    invoke("run", "examples/csv_asktell.yaml", "--run-dir", run_dir, "--no-report", "--no-progress")
    suggested = set(pd.read_csv(run_dir / "artifacts" / "suggest_round_0.csv", dtype={"id": str})["id"])
    other = next(f"mol{i:02d}" for i in range(1, 31) if f"mol{i:02d}" not in suggested)
    results = tmp_path / "results.csv"
    results.write_text(f"id,value\n{other},1.5\n")
    before = dump_db(run_dir)
    assert_user_error(invoke("tell", run_dir, results), other, "not awaiting results")
    assert dump_db(run_dir) == before


def test_missing_run_directory(tmp_path):
    assert_user_error(invoke("resume", tmp_path / "nothing"), "no run record")
