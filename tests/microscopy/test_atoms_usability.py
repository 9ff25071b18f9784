"""Usability of `activescope atoms`: help without torch, --threads, progress callbacks (the
library prints nothing), per-class metrics in `train`'s printout."""

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from activescope.cli import app
from activescope.microscopy.ensemble.train import train_ensemble
from activescope.microscopy.find.metrics import match_atoms
from activescope.microscopy.sim.simulate import SimConfig
from activescope.microscopy.training.trainer import TrainConfig, train_on_simulation

runner = CliRunner()
COMMANDS = ["simulate", "train", "find", "ensemble-train", "ensemble-find", "iterate"]

HELP_WITHOUT_TORCH = """
import sys
from typer.testing import CliRunner
from activescope.cli import app
runner = CliRunner()
for args in [["atoms", "--help"], *[["atoms", c, "--help"] for c in {commands}],
             ["bench", "atoms", "--help"]]:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    assert "Usage" in result.output, args
heavy = sorted(m for m in ("torch", "matplotlib", "safetensors") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
"""


def test_atoms_help_and_subcommand_help_do_not_import_torch():
    code = HELP_WITHOUT_TORCH.format(commands=COMMANDS)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY:\n" in done.stdout, done.stdout


def test_compute_commands_offer_threads_and_pixel_size():
    for command in COMMANDS[1:]:
        result = runner.invoke(app, ["atoms", command, "--help"])
        assert "--threads" in result.output, command
    for command in COMMANDS:
        result = runner.invoke(app, ["atoms", command, "--help"])
        assert "--pixel-size" in result.output, command


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_train_prints_per_class_scores_and_honours_threads(tmp_path, restore_threads):
    out = tmp_path / "m.safetensors"
    result = runner.invoke(app, ["atoms", "train", str(out), "--lattice", "mos2", "--steps", "3",
                                 "--batch-size", "2", "--crop", "32", "--val-frames", "1",
                                 "--threads", "1", "--pixel-size", "0.1"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    text = result.output
    assert "position F1" in text and "class-aware F1" in text
    header = next(line for line in text.splitlines() if "precision" in line)
    assert "recall" in header and "F1" in header
    for name in ("metal", "chalcogen", "dopant"):
        assert any(line.split()[:1] == [name] and len(line.split()) == 6
                   for line in text.splitlines()), (name, text)
    assert "0.1 Å/px" in text


def test_trainer_reports_progress_through_a_callback_only(capsys):
    calls = []
    sim = SimConfig(lattice="graphene", size=64)
    config = TrainConfig(steps=4, batch_size=2, crop_size=32)
    train_on_simulation(sim, config, "lite_unet", {"base_filters": 4, "depth": 2}, val_frames=0,
                        device="cpu", callback=lambda *args: calls.append(args))
    assert [c[:2] for c in calls] == [(k, 4) for k in range(1, 5)]
    assert all(isinstance(c[2], float) for c in calls)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_ensemble_training_counts_steps_over_all_members():
    calls = []
    config = TrainConfig(steps=2, batch_size=2, crop_size=32)
    train_ensemble(SimConfig(lattice="graphene", size=64), config, 2, "lite_unet",
                   {"base_filters": 4, "depth": 2}, mode="finetune", finetune_steps=3,
                   device="cpu", callback=lambda *args: calls.append(args[:2]))
    assert calls == [(k, 8) for k in range(1, 9)]


def test_class_aware_f1_counts_only_right_classes():
    true = [[0, 0, 1], [10, 0, 2], [20, 0, 2]]
    pred = [[0, 0, 1], [10, 0, 1], [20, 0, 2]]
    result = match_atoms(pred, true, tol_px=1.0, n_classes=3)
    assert result.f1 == 1.0
    assert result.class_aware_f1 == pytest.approx(2 / 3)
    table = result.per_class(["background", "a", "b"])
    assert table.loc["a", "precision"] == 0.5 and table.loc["b", "recall"] == 0.5
    report = result.report(["background", "a", "b"])
    assert "class-aware F1 0.6667" in report and "\n  b " in report


def test_bench_reports_class_aware_and_per_class_scores():
    from activescope.microscopy import bench

    settings = bench.BenchSettings(("mos2",), 4, 2, 1, 1, 1, 1, frame_size=64)
    per_class = []
    rows, _ = bench.bench_in_distribution(settings, TrainConfig(steps=4, batch_size=2,
                                                                crop_size=32), per_class)
    assert "class_f1_dose_5e3" in rows[0] and 0.0 <= rows[0]["class_f1_dose_5e3"] <= 1.0
    assert [row["class"] for row in per_class] == ["metal", "chalcogen", "dopant"]
    assert {"precision", "recall", "f1", "n_true", "n_found"} <= set(per_class[0])
    assert sum(row["n_true"] for row in per_class) > 0
