"""Human in the loop: an operator steers a campaign while it runs or between runs.

Instructions (measure these ids next; use these acquisition options from now on) are rows in the
run record, written without taking the run's lock, so they can be given while another process
runs the campaign. The campaign reads them before choosing each batch and marks the round that
applied them in the same transaction as the batch, so a resumed run replays exactly the same
choices. A pause flag asks a running campaign to stop after its current round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from .acquisition import build_acquisition
from .assemble import build_instrument, build_pool_for
from .errors import DataError, SpecError
from .pool import Pool
from .registry import format_validation_error
from .spec import AcquisitionSpec, override_section
from .store import Store


def instructions_for_round(
    rows: pd.DataFrame, acquisition: AcquisitionSpec, round_: int, selected: set[str]
) -> tuple[AcquisitionSpec, list[str], list[int]]:
    """The instructions (`Store.steering()` rows) as they apply to round `round_`: the
    acquisition settings (the spec's `acquisition`, overlaid with every acquisition instruction
    in force, in order), the ids to measure next (those not yet `selected`), and the ids of the
    instructions this round applies."""
    if rows.empty:
        return acquisition, [], []
    waiting = rows["applied_round"].isna()
    in_force = rows[waiting | (rows["applied_round"] <= round_)]
    for payload in in_force.loc[in_force["kind"] == "acquisition", "payload"]:
        acquisition = AcquisitionSpec.model_validate(override_section(acquisition, payload))
    nexts = rows.loc[waiting & (rows["kind"] == "next"), "payload"]
    forced = [k for k in dict.fromkeys(k for ids in nexts for k in ids) if k not in selected]
    return acquisition, forced, rows.loc[waiting, "id"].astype(int).tolist()


def steer_run(
    run_dir: str | Path,
    next_ids: Sequence[str] = (),
    acquisition: Mapping[str, Any] | None = None,
    pause: bool | None = None,
    pool: Pool | None = None,
) -> list[str]:
    """Steer a run, running or not (no lock is taken; the running campaign reads the instructions
    before each round and records which round applied them, so a resumed run replays them):

    next_ids: candidates to measure in the next round instead of the acquisition's choice;
    acquisition: acquisition options from the next round on (e.g. {"kind": "max_variance"} or
        {"beta": 0.5}); validated like the spec's section;
    pause: True asks the running campaign to stop after its current round; False clears it.

    Returns one line per instruction recorded. Unknown or already measured ids and invalid
    options raise one-line errors and record nothing.
    """
    with Store.open(run_dir) as store:
        spec = store.spec()
        lines = []
        if acquisition:
            merged = override_section(spec.acquisition, dict(acquisition))
            try:
                checked = AcquisitionSpec.model_validate(merged)
                build_acquisition(checked)
            except ValidationError as err:
                raise SpecError(f"acquisition.{format_validation_error(err)}") from None
        if next_ids:
            pool = build_pool_for(spec, build_instrument(spec)) if pool is None else pool
            known = pool.known(next_ids)
            unknown = [k for k in next_ids if k not in known]
            if unknown:
                raise DataError(f"unknown id(s) {', '.join(unknown[:10])}")
            taken = set(store.selected_ids()) & set(next_ids)
            if taken:
                raise DataError(f"id(s) {', '.join(sorted(taken)[:10])} were already chosen; each candidate is measured once")
            store.steer("next", list(dict.fromkeys(next_ids)))
            lines.append(f"next round measures: {', '.join(dict.fromkeys(next_ids))}")
        if acquisition:
            store.steer("acquisition", dict(acquisition))
            lines.append(f"acquisition from the next round on: {checked.kind} {checked.options() or ''}".rstrip())
        if pause is not None:
            store.set_paused(pause)
            lines.append("paused: the campaign stops after its current round" if pause else "pause cleared")
    return lines
