"""The solubility pool ships with the package: every molecule parses, ids are unique, labels are
measured log S values, and a campaign runs on it offline."""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from activescope.chem.public import solubility_pool, solubility_table
from activescope.engine.campaign import Campaign
from activescope.engine.spec import parse_spec


def test_the_packaged_table_holds_the_whole_data_set():
    table = solubility_table()
    assert len(table) == 1282 and table["id"].is_unique
    assert set(table["split"]) == {"train", "test"}
    assert all(Chem.MolFromSmiles(s) is not None for s in table["smiles"])
    assert -12 < table["logS"].min() < -10 and 1 < table["logS"].max() < 2  # Huuskonen's range, log mol/L


def test_a_campaign_finds_soluble_molecules_on_the_pool(tmp_path):
    pool = solubility_pool([{"kind": "morgan", "radius": 2, "n_bits": 512}])
    assert pool.X.shape == (1282, 512) and list(pool.feature_kinds) == ["morgan"]
    spec = parse_spec({
        "name": "sol", "seed": 0, "data": {"source": "solubility", "features": [{"kind": "morgan", "n_bits": 512}]},
        "target": {"column": "logS", "goal": "maximize"}, "model": {"kind": "rf"},
        "acquisition": {"kind": "ucb", "q": 10}, "initial": {"n": 20}, "stop": {"budget": 60},
    }, origin="test")  # fmt: skip
    campaign = Campaign.create_or_open(tmp_path / "run", spec, pool)
    campaign.run(progress=False)
    found = campaign.store.measurements()["value"].to_numpy()
    assert len(found) == 60
    later = np.median(found[20:])  # chosen by the model
    assert later > np.median(pool.labels["logS"])  # the model steers towards soluble molecules
