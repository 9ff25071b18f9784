"""`activescope latent compare` end to end on a small QM9 subset through the real entry point,
and the one-line errors for input it cannot use."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from cli_helpers import assert_user_error, invoke
from safetensors.torch import save_file

SMALL = {
    "name": "tiny-latent",
    "data": {"subset": 1000, "target": "dipole"},
    "vae": {"epochs": 2, "hidden": [64, 32], "batch_size": 64, "samples": 100},
    "campaign": {"budget": 30, "initial": 10, "q": 10, "seeds": [0]},
    "models": {"dkl": {"hidden": [32, 16], "fit_iters": 30, "warm_iters": 10}},
    "analysis": {"max_points": 400, "grid": 40, "candidates": 40},
}


def _write(tmp_path, spec, name="latent.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def test_compare_writes_metrics_curves_and_report(tmp_path):
    out = tmp_path / "study"
    result = invoke("latent", "compare", _write(tmp_path, SMALL), "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'}" in result.output and "gp_vae: top-100 recall" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["target"] == "Dipole_debye" and 990 <= metrics["pool_molecules"] <= 1000
    vae = metrics["vae"]
    assert vae["trained"] and vae["epochs"] == 2 and vae["held_out"] == 50
    assert 1 / metrics["alphabet_size"] < vae["token_accuracy"] <= 1 and 0 <= vae["molecule_accuracy"] <= 1
    assert vae["sample_validity"] > 0.9 and 0 < vae["sample_uniqueness"] <= 1  # SELFIES decode to molecules
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores["strategy"]) == ["dkl", "gp_vae"] and (scores["measurements"] == 30).all()
    assert scores["top100_recall"].between(0, 0.4).all() and scores["knn_r2"].between(-1, 1).all()
    assert scores["sigma_error_spearman"].between(-1, 1).all() and (scores["model_rmse"] > 0).all()
    assert (scores["exclusion_hull_area"] > 0).all() and (scores["exclusion_regions"] >= 0).all()
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves) == 60 and curves.groupby("strategy")["recall"].apply(lambda r: r.is_monotonic_increasing).all()
    snapshots = pd.read_csv(out / "snapshots.csv")
    assert snapshots["measurements_fitted"].tolist() == [10, 20]  # one DKL fit per modelled round
    assert snapshots["empty_fraction"].between(0, 1).all()
    maps = np.load(out / "maps.npz")
    assert maps["dkl_coords"].shape[1] == 2 and np.abs(maps["dkl_coords"]).max() < 1 and maps["dkl_measured"].sum() == 30
    candidates = pd.read_csv(out / "candidates.csv")
    assert candidates["valid"].all() and candidates["smiles"].is_unique and metrics["candidates"]["decoded"] == 40
    html = (out / "report.html").read_text()
    for part in ("Learning curves", "Latent maps", "exclusion regions", "Decoded candidates", "data:image/png;base64"):
        assert part in html
    again = invoke("latent", "compare", _write(tmp_path, SMALL), "-o", out, "--no-progress")
    assert_user_error(again, "already holds a latent comparison")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"data": {"target": "colour"}}, ("unknown QM9 target 'colour'",)),
        ({"models": {"dkl": {"latent_dim": 3}}}, ("models.dkl.latent_dim must be 2",)),
        ({"models": {"gp": {"kernel": "cosine"}}}, ("models", "gp.kernel")),
        ({"campaign": {"initial": 80, "budget": 30}}, ("initial (80) exceeds budget (30)",)),
        ({"vae": {"epoch": 3}}, ("vae.epoch: unknown field",)),
    ],
)
def test_bad_spec_is_one_line(tmp_path, change, fragments):
    spec = {key: {**SMALL.get(key, {}), **value} for key, value in change.items()}
    result = invoke("latent", "compare", _write(tmp_path, spec), "-o", tmp_path / "out", "--no-progress")
    assert_user_error(result, *fragments)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("text", "is not an activescope model file"),
        ({"architecture": "unet", "classes": ["background", "atom"]}, "holds a 'unet' network (atom finder), not a sequence_vae"),
    ],
)
def test_a_model_file_of_the_wrong_kind_is_one_line(tmp_path, content, fragment):
    path = tmp_path / "model.safetensors"
    if content == "text":
        path.write_text("not weights")
    else:
        save_file({"w": torch.zeros(1)}, str(path), metadata={"activescope": json.dumps(content)})
    spec = {**SMALL, "vae": {"path": str(path)}}
    result = invoke("latent", "compare", _write(tmp_path, spec), "-o", tmp_path / "out", "--no-progress")
    assert_user_error(result, fragment)
