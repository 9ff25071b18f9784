"""Molecular featurizers, configurable from the spec and cached on disk.

Four kinds, each one column block of the pool's feature matrix:

- ``physics``: geometry-aware descriptors from the 3D structure (see `chem.physics`): MMFF94
  and QEq charge dipoles, charge separation, shape, element counts, Coulomb eigenvalues.
- ``rdkit2d``: the RDKit 2D descriptors listed in `RDKIT2D_DESCRIPTORS` (size, polarity, H-bond
  donors/acceptors, rings, Gasteiger charge extremes, BCUT2D, PEOE_VSA surface bins, topology).
- ``morgan``: Morgan count fingerprints (RDKit generator API; counts clipped to 255, uint8).
- ``selfies``: one-hot SELFIES tokens, fixed alphabet and length (see `chem.selfies`; uint8).

Each block is computed once per data set and settings (in chunks, over worker processes for
the RDKit parts, with a progress bar) and kept in the cache. When assembled, ``physics`` and
``rdkit2d`` columns are standardised over the pool (missing values -> column mean, constant
columns -> 0); fingerprints stay raw counts because Tanimoto kernels need them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Sequence, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from rdkit import Chem
from rdkit.Chem import Descriptors, rdFingerprintGenerator
from rich.progress import Progress

from ..engine.cache import cached_arrays
from . import physics, selfies
from .selfies import SelfiesFeatures

FEATURES_VERSION = 2
CHUNK_SIZE = 2000
log = logging.getLogger("activescope.chem")

RDKIT2D_DESCRIPTORS = (
    "MolWt", "HeavyAtomMolWt", "NumValenceElectrons", "HeavyAtomCount", "MolLogP", "MolMR", "TPSA",
    "LabuteASA", "NumHDonors", "NumHAcceptors", "NHOHCount", "NOCount", "NumHeteroatoms",
    "NumRotatableBonds", "RingCount", "NumAromaticRings", "NumAliphaticRings", "NumSaturatedRings",
    "FractionCSP3", "MaxPartialCharge", "MinPartialCharge", "MaxAbsPartialCharge", "MinAbsPartialCharge",
    "BCUT2D_MWHI", "BCUT2D_MWLOW", "BCUT2D_CHGHI", "BCUT2D_CHGLO", "BCUT2D_LOGPHI", "BCUT2D_LOGPLOW",
    "BCUT2D_MRHI", "BCUT2D_MRLOW", *(f"PEOE_VSA{i}" for i in range(1, 15)), "BalabanJ", "BertzCT",
    "HallKierAlpha", "Kappa1", "Kappa2", "Kappa3", "Chi0v", "Chi1v", "Chi2v",
)
"""The 54 RDKit descriptors of the ``rdkit2d`` block, in column order."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhysicsFeatures(_Config):
    """Geometry-aware physics descriptors (needs 3D structures; embedded by ETKDG for SMILES)."""

    kind: Literal["physics"] = Field("physics", description="physics descriptors (MMFF94 charge dipole and friends)")
    embed_seed: int = Field(0, description="ETKDG seed when structures must be embedded from SMILES")


class Rdkit2dFeatures(_Config):
    """The RDKit 2D descriptors in `RDKIT2D_DESCRIPTORS`."""

    kind: Literal["rdkit2d"] = Field("rdkit2d", description="54 RDKit 2-D descriptors")


class MorganFeatures(_Config):
    """Morgan count fingerprint of the given radius folded to n_bits."""

    kind: Literal["morgan"] = Field("morgan", description="Morgan (ECFP-like) count fingerprint")
    radius: int = Field(2, ge=1, le=6, description="bond radius of the circular environments")
    n_bits: int = Field(2048, ge=64, le=16384, description="folded fingerprint length")


FeatureConfig = Annotated[Union[PhysicsFeatures, Rdkit2dFeatures, MorganFeatures, SelfiesFeatures], Field(discriminator="kind")]
STANDARDISED_KINDS = ("physics", "rdkit2d")


def as_config_dicts(value: Any) -> Any:
    """Spec shorthand: a bare string `"morgan"` means `{kind: morgan}` with default settings."""
    if isinstance(value, (str, dict)):
        value = [value]
    if isinstance(value, list):
        return [{"kind": item} if isinstance(item, str) else item for item in value]
    return value


@dataclass
class Molecules:
    """Molecules to featurize: ids, SMILES and (optionally) 3D structures in XYZ atom order.

    data_key identifies the data set for the cache (e.g. `{"data": "qm9...", "rows": "<hash>"}`).
    """

    ids: np.ndarray
    smiles: np.ndarray
    data_key: dict[str, Any]
    atomic_numbers: np.ndarray | None = None
    positions: np.ndarray | None = None


@dataclass
class FeatureMatrix:
    """Assembled features of the molecules in `rows` (those every featurizer could handle)."""

    X: np.ndarray
    rows: np.ndarray
    names: list[str] = field(default_factory=list)
    kinds: dict[str, slice] = field(default_factory=dict)


def featurize(molecules: Molecules, configs: Sequence[PhysicsFeatures | Rdkit2dFeatures | MorganFeatures]) -> FeatureMatrix:
    """Compute (or load from the cache) every block and assemble them into one float32 matrix.

    Molecules that a featurizer cannot handle are skipped and reported in one log line.
    """
    blocks = [_cached_block(molecules, config) for config in configs]
    valid = np.logical_and.reduce([block["valid"] for block in blocks]) if blocks else np.ones(len(molecules.ids), bool)
    failed = molecules.ids[~valid]
    if failed.size:
        log.warning("skipped %d molecules that could not be featurized (first: %s)", failed.size, ", ".join(failed[:5]))
    rows = np.flatnonzero(valid)
    widths = [block["values"].shape[1] for block in blocks]
    X = np.empty((rows.size, sum(widths)), np.float32)
    names: list[str] = []
    kinds: dict[str, slice] = {}
    start = 0
    for config, block, width in zip(configs, blocks, widths):
        values = block["values"] if rows.size == len(valid) else block["values"][rows]
        X[:, start : start + width] = _standardise(values) if config.kind in STANDARDISED_KINDS else values
        kind = config.kind if config.kind not in kinds else f"{config.kind}_{len(kinds)}"
        kinds[kind] = slice(start, start + width)
        names += [f"{kind}:{name}" for name in block["names"].tolist()]
        start += width
    return FeatureMatrix(X=X, rows=rows, names=names, kinds=kinds)


def raw_block(
    molecules: Molecules, config: PhysicsFeatures | Rdkit2dFeatures | MorganFeatures
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One featurizer block before standardisation: values (n, d) in the descriptors' own units,
    a mask of the molecules it could handle, and the column names. Shares `featurize`'s cache."""
    block = _cached_block(molecules, config)
    return block["values"], block["valid"], block["names"].tolist()


def morgan_counts(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(n, n_bits) uint8 Morgan count fingerprints (counts clipped at 255) and a parsed mask."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), np.uint8)
    valid = np.zeros(len(smiles), bool)
    for row, mol in enumerate(_parse(smiles)):
        if mol is not None:
            out[row] = np.minimum(generator.GetCountFingerprintAsNumPy(mol), 255)
            valid[row] = True
    return out, valid


def rdkit2d_descriptors(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 54) float32 `RDKIT2D_DESCRIPTORS` (NaN where one fails or is infinite), parsed mask."""
    functions = dict(Descriptors.descList)
    calculators = [functions[name] for name in RDKIT2D_DESCRIPTORS]
    out = np.full((len(smiles), len(calculators)), np.nan)
    valid = np.zeros(len(smiles), bool)
    for row, mol in enumerate(_parse(smiles)):
        if mol is not None:
            out[row] = [_safe_descriptor(calc, mol) for calc in calculators]
            valid[row] = True
    out[~np.isfinite(out)] = np.nan
    return out.astype(np.float32), valid


def _physics_chunk(smiles: np.ndarray, atomic_numbers: np.ndarray | None, positions: np.ndarray | None, seed: int):
    if atomic_numbers is None:
        atomic_numbers, positions, charges = physics.embed_smiles(smiles.tolist(), seed=seed)
    else:
        charges = physics.mmff_charges_from_xyz(atomic_numbers, positions, smiles.tolist())
    with np.errstate(divide="ignore", invalid="ignore"):
        values, names = physics.physics_descriptors(atomic_numbers, positions, charges)
    return values, (atomic_numbers > 0).any(axis=1), names


def _cached_block(molecules: Molecules, config) -> dict[str, np.ndarray]:
    key = {"what": "chem-features", "version": FEATURES_VERSION, "config": config.model_dump(), **molecules.data_key}
    return cached_arrays(key, lambda: _build_block(molecules, config), mmap=config.kind == "morgan")


def _build_block(molecules: Molecules, config) -> dict[str, np.ndarray]:
    smiles = molecules.smiles
    if config.kind == "morgan":
        values, valid = _run_chunks(morgan_counts, [(s, config.radius, config.n_bits) for s in _split(smiles)], "morgan")
        names = [f"bit_{i}" for i in range(config.n_bits)]
    elif config.kind == "selfies":
        encoded, encodable = _run_chunks(selfies.encode_chunk, [(s,) for s in _split(smiles)], "selfies")
        return selfies.one_hot_block(encoded, encodable, smiles, config)
    elif config.kind == "rdkit2d":
        values, valid = _run_chunks(rdkit2d_descriptors, [(s,) for s in _split(smiles)], "rdkit2d")
        names = list(RDKIT2D_DESCRIPTORS)
    else:
        n_chunks = len(_split(smiles))
        z, r = molecules.atomic_numbers, molecules.positions
        geometry = zip(_split(z), _split(r)) if z is not None else [(None, None)] * n_chunks
        chunks = [(s, zc, rc, config.embed_seed) for s, (zc, rc) in zip(_split(smiles), geometry)]
        values, valid, names = _run_chunks(_physics_chunk, chunks, "physics", keep_last=True)
    return {"values": values, "valid": valid, "names": np.array(names)}


def _run_chunks(function: Callable, chunks: list[tuple], label: str, keep_last: bool = False):
    """Apply `function` to each chunk (in worker processes when there are several chunks) and
    stack the array outputs; with keep_last, the last output (e.g. names) is taken once."""
    workers = min(len(chunks), os.cpu_count() or 1)
    results = []
    with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task(f"featurizing ({label})", total=len(chunks))
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for result in pool.map(function, *zip(*chunks)):
                    results.append(result)
                    progress.advance(task)
        else:
            for chunk in chunks:
                results.append(function(*chunk))
                progress.advance(task)
    arrays = [np.concatenate([r[i] for r in results]) for i in range(len(results[0]) - keep_last)]
    return (*arrays, results[0][-1]) if keep_last else tuple(arrays)


def _standardise(values: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column over the rows; NaN -> 0 (the mean); constant -> 0."""
    values = values.astype(np.float64)
    mean = np.nanmean(values, axis=0) if len(values) else np.zeros(values.shape[1])
    std = np.nanstd(values, axis=0) if len(values) else np.ones(values.shape[1])
    mean, std = np.nan_to_num(mean), np.nan_to_num(std)
    scaled = (values - mean) / np.where(std > 1e-12, std, 1.0)
    scaled[:, std <= 1e-12] = 0.0
    return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _split(array: np.ndarray) -> list[np.ndarray]:
    return [array[i : i + CHUNK_SIZE] for i in range(0, len(array), CHUNK_SIZE)]


def _parse(smiles: Sequence[str]):
    return (Chem.MolFromSmiles(str(s)) for s in smiles)


def _safe_descriptor(calculator: Callable[[Chem.Mol], float], mol: Chem.Mol) -> float:
    try:
        return float(calculator(mol))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return np.nan
