# %% [markdown]
# # activescope in a notebook: your own table, your own measurement function
#
# Each `# %%` block is a notebook cell (VS Code, Jupyter with jupytext, or run the file as it is:
# `python examples/notebook_asktell.py`). We build a candidate pool from a pandas DataFrame, let
# activescope choose what to measure with an in-memory ask/tell loop, and plot what it found.
#
# The "lab" here is the QM9 table's DFT HOMO-LUMO gap standing in for an expensive measurement;
# swap `measure` for your instrument or your colleague with a pipette.

# %%
import matplotlib

matplotlib.use("Agg")  # a file, not a window, so the example also runs headless
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from activescope import Campaign, Pool, parse_spec
from activescope.chem.features import rdkit2d_descriptors
from activescope.chem.qm9 import load_qm9

# %% [markdown]
# ## A candidate table
# 1,500 molecules with 54 RDKit descriptors each: the kind of DataFrame a chemist already has.

# %%
table = load_qm9(subset=1500, seed=7)
descriptors, parsed = rdkit2d_descriptors(table.smiles)
frame = pd.DataFrame(descriptors, columns=[f"d{i}" for i in range(descriptors.shape[1])])
frame.insert(0, "smiles", table.smiles)
frame.insert(0, "name", table.ids)
frame = frame[parsed & np.isfinite(descriptors).all(axis=1)].reset_index(drop=True)
feature_columns = [c for c in frame.columns if c.startswith("d")]
frame[feature_columns] = (frame[feature_columns] - frame[feature_columns].mean()) / (frame[feature_columns].std() + 1e-9)
pool = Pool.from_frame(frame, features=feature_columns, id_column="name", info=["smiles"])
gap_of = dict(zip(table.ids, table.labels["HOMO_LUMO_gap_au"] * 27.2114))  # hartree -> eV


def measure(batch: pd.DataFrame) -> list[float]:
    """The expensive experiment: here, a look-up of the DFT gap (eV) of each suggested molecule."""
    return [gap_of[name] for name in batch["id"]]


# %% [markdown]
# ## The campaign: smallest gap, 10 per batch, 60 measurements in all

# %%
spec = parse_spec({
    "name": "smallest-gap",
    "seed": 0,
    "target": {"column": "gap_eV", "goal": "minimize"},
    "model": {"kind": "rf", "n_estimators": 50},
    "acquisition": {"kind": "ucb", "beta": 1.0, "q": 10},
    "initial": {"n": 20, "method": "diverse"},
    "oracle": {"kind": "asktell"},
    "stop": {"budget": 60},
})
campaign = Campaign.create(None, spec, pool=pool)  # None: the run record lives in memory

while not campaign.done:
    batch = campaign.ask()  # id, smiles, predicted mean and std, acquisition score
    campaign.tell(batch["id"], measure(batch))

summary = campaign.summary(top=5)
print(summary.best[["id", "value", "smiles"]].to_string(index=False))

# %% [markdown]
# ## What it found
# Left: the best gap so far against the number of measurements, next to what random picks
# reach on average. Right: the model's predictions for the whole table against the truth.

# %%
measured = campaign.store.measurements()
truth = np.array([gap_of[name] for name in pool.ids])
best_so_far = np.minimum.accumulate(measured["value"].to_numpy())
rng = np.random.default_rng(0)
random_best = np.mean([np.minimum.accumulate(rng.choice(truth, len(measured), replace=False)) for _ in range(200)], axis=0)
mean, variance = campaign.predict()  # the latest model, in eV, for the whole table

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
left.plot(np.arange(1, len(measured) + 1), best_so_far, label="activescope (rf + UCB)")
left.plot(np.arange(1, len(measured) + 1), random_best, "--", label="random (mean of 200)")
left.axhline(truth.min(), color="grey", lw=0.8, label="best in the table")
left.set(xlabel="measurements", ylabel="smallest gap found (eV)")
left.legend()
right.scatter(truth, mean, s=4, alpha=0.4, label="predicted")
right.scatter(measured["value"], mean[pool.index_of(measured["id"])], s=10, color="C3", label="measured")
right.plot([truth.min(), truth.max()], [truth.min(), truth.max()], color="grey", lw=0.8)
right.set(xlabel="DFT gap (eV)", ylabel="model mean (eV)")
right.legend()
fig.tight_layout()
fig.savefig("notebook_asktell.png", dpi=120)
print("figure: notebook_asktell.png")
