"""Hypothesis learning beyond one model: proposing candidate laws from data (`generator`) and
known-truth checks of the selection loop (`synthetic`). The structured GP itself is
`models.hypothesis`; the choice among hypotheses is the engine's `select` surrogate."""
