"""Deep ensembles: atom finding with per-atom uncertainty, ensemble training and ELIT.

``finder`` runs the members and measures their agreement per atom, ``train`` trains the
members on simulated frames, ``elit`` self-trains them on unlabelled frames with pseudo-labels.
"""
