"""`activescope causal discover | select | intervene`: active causal learning from a YAML spec.

Commands parse options and call `study`; bad input raises an ActivescopeError that the main
entry point prints as one line with exit code 2. Heavy modules load inside the commands.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

causal_app = typer.Typer(help="Active causal learning on QM9: discover, select, intervene.", no_args_is_help=True)

_SPEC = typer.Argument(..., help="causal spec (YAML); see examples/qm9_causal.yaml")


def _default_dir(name: str, step: str) -> Path:
    return Path("runs") / f"{name}-{step}-{datetime.now():%Y%m%d-%H%M%S}"


@causal_app.callback()
def causal_group() -> None:
    """Active causal learning on QM9: discover, select, intervene."""


@causal_app.command()
def discover(
    spec: Path = _SPEC,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output directory (default runs/<name>-discover-<time>)"),
) -> None:
    """Learn the full pool's causal graph (DirectLiNGAM, target as sink) and its top-k causal features."""
    from .spec import load_causal_spec
    from .study import run_discover

    causal_spec = load_causal_spec(spec)
    typer.echo(f"report: {run_discover(causal_spec, out or _default_dir(causal_spec.name, 'discover'))}")


@causal_app.command()
def select(
    spec: Path = _SPEC,
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", "-o", help="run directory (default runs/<name>-select-<time>); an existing one with the same spec resumes"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Grow the smallest subset whose causal graph matches the full pool's (resumable), and compare with random growth."""
    from .spec import load_causal_spec
    from .study import run_select

    causal_spec = load_causal_spec(spec)
    run_dir = run_dir or _default_dir(causal_spec.name, "select")
    try:
        path = run_select(causal_spec, run_dir, progress)
    except KeyboardInterrupt:
        typer.echo(f"interrupted; continue with: activescope causal select {spec} -o {run_dir}", err=True)
        raise typer.Exit(130) from None
    summary = json.loads((path.parent / "summary.json").read_text())
    typer.echo(f"{summary['stop_reason']}: {summary['subset_size']} of {summary['pool_molecules']:,} molecules, graph loss "
               f"{summary['final_loss']:.3f} (threshold {summary['loss_threshold']:g}); random-forest R² "
               f"{summary['r2_active_subset']:.3f} on the subset, {summary['r2_full']:.3f} on the full pool")
    typer.echo(f"report: {path}")


@causal_app.command()
def intervene(run_dir: Path = typer.Argument(..., help="a `causal select` run directory")) -> None:
    """Intervene on the active subset's causal features and propose design-region molecules above the threshold."""
    from .study import run_intervene

    path = run_intervene(run_dir)
    import pandas as pd

    typer.echo(pd.read_csv(path.parent / "success.csv").to_string(index=False))
    typer.echo(f"report: {path}")
