"""`activescope causal discover | select | intervene` on a small QM9 spec, end to end, and the
one-line errors for input causal discovery cannot use."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from cli_helpers import assert_user_error, invoke

from activescope.chem.causal.spec import DEFAULT_DESCRIPTORS

SMALL = {
    "name": "tiny-causal",
    "data": {"pool_size": 500, "design_size": 400, "descriptors": ["MolLogP", "MolMR", "TPSA", "NumHeteroatoms",
                                                                   "HallKierAlpha", "MaxPartialCharge", "BertzCT"]},
    "discovery": {"top_k": 4},
    "selection": {"initial": 20, "batch": 20, "regions": 2, "max_rounds": 2, "loss_threshold": 0.0, "compare_seeds": 1},
    "intervention": {"proposals": 10},
}


def _write(tmp_path, spec, name="causal.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def test_discover_select_intervene(tmp_path):
    spec = _write(tmp_path, SMALL)
    result = invoke("causal", "discover", spec, "-o", tmp_path / "disc")
    assert result.exit_code == 0, result.output
    effects = pd.read_csv(tmp_path / "disc" / "causal_features.csv")
    assert effects["causal_feature"].sum() == 4 and len(effects) == 7
    assert effects["total_effect_std"].abs().is_monotonic_decreasing
    adjacency = pd.read_csv(tmp_path / "disc" / "graph_full.csv", index_col=0)
    assert list(adjacency.columns)[-1] == "Dipole_debye" and (adjacency["Dipole_debye"] == 0).all()

    run = tmp_path / "run"
    result = invoke("causal", "select", spec, "-o", run, "--no-progress")
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "artifacts" / "summary.json").read_text())
    assert f"max rounds: 60 of {summary['pool_molecules']} molecules, graph loss {summary['final_loss']:.3f}" in result.output
    assert summary["subset_size"] == 60 and summary["stop_reason"] == "max rounds"
    assert summary["features"] == effects.loc[effects["causal_feature"], "descriptor"].tolist()
    assert 0.1 < summary["r2_full"] <= 1 and -1 < summary["r2_active_subset"] <= 1 and len(summary["r2_random_subsets"]) == 1
    curves = pd.read_csv(run / "artifacts" / "curves.csv")
    assert set(curves["method"]) == {"active", "random"} and len(curves) == 6

    result = invoke("causal", "intervene", run)
    assert result.exit_code == 0, result.output
    assert "causal intervention" in result.output
    proposals = pd.read_csv(run / "artifacts" / "proposals.csv")
    assert len(proposals) == 10 and proposals["id"].is_unique
    html = (run / "artifacts" / "report.html").read_text()
    for part in ("Graph loss", "full pool vs active subset", "success rate", "<svg", "data:image/png;base64"):
        assert part in html
    rerun = invoke("causal", "select", spec, "-o", run, "--no-progress")  # a finished run: nothing new
    assert rerun.exit_code == 0 and json.loads((run / "artifacts" / "summary.json").read_text()) == summary


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"data": {"target": "colour"}}, ("unknown QM9 target 'colour'",)),
        ({"data": {"descriptors": ["MolLogP", "Smell"]}}, ("data.descriptors", "unknown descriptor 'Smell'")),
        ({"data": {"pool_size": 20, "descriptors": list(DEFAULT_DESCRIPTORS)}}, ("too few molecules (16) for 18 variables",)),
        ({"data": {"max_heavy_atoms": 3, "descriptors": ["NumAromaticRings", "MolLogP"]}}, ("'NumAromaticRings' has zero variance",)),
        ({"discovery": {"top_k": 5}}, ("top_k (5) exceeds the 2 descriptors",)),
    ],
)
def test_bad_input_is_one_line(tmp_path, change, fragments):
    spec = {"data": {"descriptors": ["MolLogP", "TPSA"], "design_size": 100, **change.get("data", {})},
            "discovery": {"top_k": 2}}
    spec.update({k: v for k, v in change.items() if k != "data"})
    result = invoke("causal", "discover", _write(tmp_path, spec), "-o", tmp_path / "out")
    assert_user_error(result, *fragments)


def test_intervene_needs_a_finished_selection(tmp_path):
    assert_user_error(invoke("causal", "intervene", tmp_path), "not a causal selection run")


def test_root_help_lists_causal_without_loading_it():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom activescope.cli import app\n"
            "out = CliRunner().invoke(app, ['--help']).output\n"
            "print('causal' in out, any(m.startswith(('activescope.chem', 'lingam', 'rdkit')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["True", "False"]
