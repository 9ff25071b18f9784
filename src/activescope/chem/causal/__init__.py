"""Active causal learning on molecules (issue #10).

- `discovery`: DirectLiNGAM over standardised RDKit descriptors plus the target (a sink), total
  effects and top-k causal feature selection.
- `graph_loss`: the relative spectral distance between two causal graphs.
- `selection`: active subset selection recorded in the run store (resumable), random growth.
- `interventions`: do()-interventions on the causal features and design-region proposals.
- `data`, `spec`, `study` (the CLI's steps), `figures`, `report`, `cli`.

Nothing heavy is imported here; `lingam` is imported when a graph is first learned.
"""
