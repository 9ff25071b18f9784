"""Self-contained HTML reports of the causal steps: figures embedded as PNG, molecules as SVG."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from . import figures
from .discovery import CausalGraph
from .spec import CausalSpec

_CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:.9em;margin:.8em 0}td,th{border:1px solid #ddd;padding:.25em .6em}"
        "th{background:#f4f6f9}figure img{max-width:100%}figcaption,.note{color:#555;font-size:.9em}")


def _figure(out: Path, name: str, fig, caption: str) -> str:
    """Save the figure as `<name>.png` next to the report and embed it."""
    data = figures.png(fig)
    (out / f"{name}.png").write_bytes(data)
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)


def _write(out: Path, title: str, parts: list[tuple[str, str]]) -> Path:
    body = "".join(f"<h2>{html.escape(heading)}</h2>{content}" for heading, content in parts)
    path = out / "report.html"
    path.write_text(f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                    f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")
    return path


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def discovery_report(out: Path, spec: CausalSpec, everything: CausalGraph, full: CausalGraph,
                     effects: pd.DataFrame, n_pool: int) -> Path:
    """Report of `causal discover`: both graphs and the ranked total effects."""
    fig = figures.graphs_figure([(everything, "all descriptors"), (full, f"top {len(full.names) - 1} causal features")])
    parts = [
        ("Causal graphs", _note(f"DirectLiNGAM on {n_pool:,} QM9 molecules with at most {spec.data.max_heavy_atoms} heavy "
                                f"atoms; {full.target} constrained to be a sink. Weights are standardised coefficients.")
         + _figure(out, "graphs", fig, "Red: positive edge, blue: negative; width ∝ |weight|.")),
        ("Total effects on the target", _table(effects)),
    ]
    return _write(out, f"Causal discovery: {spec.name}", parts)


def run_report(artifacts: Path, spec: CausalSpec) -> Path:
    """The report of a selection run, rebuilt from its artifacts: summary, loss curves, full vs
    subset graphs and, once `causal intervene` has run, the design by intervention."""
    summary = json.loads((artifacts / "summary.json").read_text())
    curves = pd.read_csv(artifacts / "curves.csv")
    full, subset = CausalGraph.load(artifacts / "graph_full"), CausalGraph.load(artifacts / "graph_subset")
    rows = pd.DataFrame({"quantity": list(summary), "value": [str(v) for v in summary.values()]})
    parts = [
        ("Summary", _table(rows)),
        ("Graph loss", _figure(artifacts, "loss_curves", figures.loss_curves_figure(curves, spec.selection.loss_threshold),
                               f"Relative spectral distance ({spec.graph_loss.kind}) to the full pool's graph.")),
        ("Graphs: full pool vs active subset",
         _figure(artifacts, "graphs_full_vs_subset", figures.graphs_figure([(full, "full pool"), (subset, "active subset")]),
                 "Red: positive edge, blue: negative; width ∝ |weight|.")),
    ]
    if (artifacts / "intervention.json").is_file():
        parts += _intervention_parts(artifacts, spec)
    return _write(artifacts, f"Active causal learning: {spec.name}", parts)


def _intervention_parts(artifacts: Path, spec: CausalSpec) -> list[tuple[str, str]]:
    options = spec.intervention
    counts = json.loads((artifacts / "intervention.json").read_text())
    rates = pd.read_csv(artifacts / "success.csv")
    table = pd.read_csv(artifacts / "interventions.csv")
    proposals = pd.read_csv(artifacts / "proposals.csv")
    legends = [f"{k}  {v:.2f}" for k, v in zip(proposals["id"], proposals["true_target"])]
    return [
        ("Design by intervention: success rate",
         _note(f"Fraction of {len(proposals)} proposals among {counts['design_molecules']:,} design-region molecules "
               f"(more than {spec.data.max_heavy_atoms} heavy atoms, never seen) whose true {spec.data.target} exceeds "
               f"{options.threshold:g}; the causal model and the random forest learned from the "
               f"{counts['subset_size']} molecules of the active subset.") + _table(rates)),
        ("Interventions", _figure(artifacts, "effects", figures.effects_figure(table[table["used"]], spec.data.target),
                                  "Total effects of the causal features used for design.") + _table(table)),
        ("Proposed molecules", _note("Legend: id and true target value.")
         + figures.molecules_svg(proposals["smiles"].tolist(), legends) + _table(proposals)),
    ]
