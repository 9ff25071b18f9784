"""Human in the loop: an operator chooses the next points, changes the acquisition or pauses a
campaign, while it runs or between runs; every instruction is recorded and replayed on resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_helpers import assert_user_error, dump_db, invoke

from activescope.engine.campaign import Campaign
from activescope.engine.spec import parse_spec
from activescope.engine.steering import steer_run


@pytest.fixture
def spec(spec_dict):
    spec_dict.update(initial={"n": 10}, acquisition={"kind": "ucb", "q": 5}, stop={"budget": 40})
    return parse_spec(spec_dict)


def test_next_points_and_acquisition_change_apply_from_the_next_round(tmp_path, spec, small_pool):
    with Campaign.create(tmp_path / "run", spec, small_pool) as campaign:
        campaign.step()
        campaign.step()
        unmeasured = [k for k in small_pool.ids[:50] if k not in set(campaign.store.selected_ids())][:3]
        lines = steer_run(tmp_path / "run", next_ids=unmeasured, acquisition={"kind": "max_variance"}, pool=small_pool)
        assert lines[0].startswith("next round measures:") and "max_variance" in lines[1]
        campaign.step()
        campaign.step()
        selections = campaign.store.selections()
        steering = campaign.store.steering()
    steered = selections[selections["round"] == 2]
    assert steered["id"].tolist() == unmeasured and steered["acquisition"].isna().all()
    assert steering["applied_round"].tolist() == [2, 2]
    after = selections[selections["round"] == 3].iloc[0]
    assert after["acquisition"] == pytest.approx(after["variance"])  # max_variance scores by variance


def test_a_resumed_run_replays_the_instructions(tmp_path, spec, small_pool):
    def drive(run_dir, interrupt: bool):
        campaign = Campaign.create(run_dir, spec, small_pool)
        for _ in range(2):
            campaign.step()
        chosen = [k for k in small_pool.ids if k not in set(campaign.store.selected_ids())][3:5]
        steer_run(run_dir, next_ids=chosen, acquisition={"beta": 9.0}, pool=small_pool)
        campaign.step()
        if interrupt:
            campaign.close()
            campaign = Campaign.open(run_dir, pool=small_pool)
        campaign.run(progress=False)
        selections = campaign.store.selections()[["round", "id"]]
        campaign.close()
        return selections

    assert drive(tmp_path / "straight", False).equals(drive(tmp_path / "resumed", True))


def test_raster_scans_the_pool_in_order_without_a_model(tmp_path, spec_dict, small_pool):
    spec_dict.update(initial={"n": 5}, acquisition={"kind": "raster", "q": 5}, stop={"budget": 20})
    with Campaign.create(tmp_path / "run", parse_spec(spec_dict), small_pool) as campaign:
        assert campaign._surrogate is None
        campaign.run(progress=False)
        selections = campaign.store.selections()
    initial = set(selections.loc[selections["round"] == 0, "id"])
    expected = [k for k in small_pool.ids if k not in initial][:15]
    assert selections.loc[selections["round"] > 0, "id"].tolist() == expected


def test_bad_instructions_are_refused_and_record_nothing(finished_run):
    before = dump_db(finished_run)
    assert_user_error(invoke("steer", finished_run, "--next", "no_such_id"), "unknown id(s) no_such_id")
    measured = before[2][0][1]
    assert_user_error(invoke("steer", finished_run, "--next", measured), "already chosen")
    assert_user_error(invoke("steer", finished_run, "--acquisition", "beta=-1"), "acquisition.beta")
    assert_user_error(invoke("steer", finished_run, "--acquisition", "kind=ucb", "--acquisition", "xi=0.1"), "acquisition.xi: unknown field")
    assert_user_error(invoke("steer", finished_run, "--acquisition", "beta"), "KEY=VALUE")
    assert_user_error(invoke("steer", finished_run), "nothing to do")
    assert dump_db(finished_run) == before


def test_pause_stops_a_running_campaign_and_resume_continues_it(tmp_path, spec_dict, write_spec):
    spec_dict.update(oracle={"kind": "dataset", "delay_s": 0.05}, initial={"n": 10}, acquisition={"kind": "ucb", "q": 5}, stop={"budget": 60})
    run_dir = tmp_path / "run"
    entry = [sys.executable, "-c", "from activescope.cli import app; app()"]
    proc = subprocess.Popen([*entry, "run", write_spec(spec_dict), "-o", run_dir, "--no-report", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "run.lock").exists():
        time.sleep(0.02)
    result = invoke("steer", run_dir, "--pause")
    assert result.exit_code == 0 and "paused" in result.output
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "paused; continue with: activescope resume" in out
    measured = len(dump_db(run_dir)[3])
    assert 0 < measured < 60
    resumed = invoke("resume", run_dir, "--no-report", "--no-progress")
    assert resumed.exit_code == 0 and "pause cleared" in resumed.output
    ids = [row[0] for row in dump_db(run_dir)[3]]
    assert len(ids) == len(set(ids)) == 60
    assert np.isfinite([row[2] for row in dump_db(run_dir)[3]]).all()
