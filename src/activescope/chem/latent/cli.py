"""`activescope latent compare SPEC`: VAE latent versus DKL latent on a QM9 target.

The command parses options and calls `study.run_compare`; bad input raises an ActivescopeError
that the main entry point prints as one line with exit code 2. Heavy modules load inside it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

latent_app = typer.Typer(help="Learned representations of molecules: VAE latent vs DKL latent.", no_args_is_help=True)


@latent_app.callback()
def latent_group() -> None:
    """Learned representations of molecules: VAE latent vs DKL latent."""


@latent_app.command()
def compare(
    spec: Path = typer.Argument(..., help="latent-comparison spec (YAML); see examples/qm9_latent.yaml"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output directory (default runs/<name>-latent-<time>)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Train a SELFIES VAE, run GP-on-VAE-latent and DKL campaigns, score both latents, write the report."""
    from .spec import load_latent_spec
    from .study import run_compare

    latent_spec = load_latent_spec(spec)
    out = out or Path("runs") / f"{latent_spec.name}-latent-{datetime.now():%Y%m%d-%H%M%S}"
    path = run_compare(latent_spec, out, progress, log=lambda line: typer.echo(line, err=True))
    metrics = json.loads((out / "metrics.json").read_text())
    vae = metrics["vae"]
    typer.echo(f"VAE: held-out token accuracy {vae['token_accuracy']:.3f}, molecule accuracy {vae['molecule_accuracy']:.3f}, "
               f"prior samples valid {vae['sample_validity']:.3f}, unique {vae['sample_uniqueness']:.3f}")
    k = metrics["top_k"]
    for strategy, row in metrics["strategies"].items():
        typer.echo(f"{strategy}: top-{k} recall {row[f'top{k}_recall_mean']:.3f}, k-NN R² "
                   f"{row['knn_r2_mean']:.3f}, σ–error Spearman {row['sigma_error_spearman_mean']:.3f}, "
                   f"exclusion regions {row['exclusion_regions_mean']:.1f}")
    typer.echo(f"report: {path}")
