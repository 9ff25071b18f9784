"""Atom-resolved microscopy: simulated frames, atom finding, detection metrics and image I/O.

Subpackages, lowest layer first (each imports only those before it): ``sim`` makes labelled STEM
frames, ``nets`` holds the segmentation networks and their checkpoints, ``find`` runs them and
turns class-probability maps into atom tables (``find.locate``), scores them against ground truth
(``find.metrics``) and draws them (``find.overlay``, loads matplotlib), ``training`` trains one
network and ``ensemble`` runs, trains and self-trains (ELIT) ensembles. ``io`` reads real images
and checks output destinations. This package imports no torch: the names below come from
``sim``, ``find.locate``, ``find.metrics`` and ``io``.
"""

from activescope.microscopy.find.locate import find_atoms, read_atoms, save_atoms
from activescope.microscopy.find.metrics import MatchResult, detection_scores, match_atoms
from activescope.microscopy.io import read_image
from activescope.microscopy.sim.lattices import LATTICES, lattice_classes
from activescope.microscopy.sim.simulate import (Frame, SimConfig, simulate_batch, simulate_frame,
                                                 standardize)

__all__ = ["LATTICES", "Frame", "MatchResult", "SimConfig", "detection_scores", "find_atoms",
           "lattice_classes", "match_atoms", "read_atoms", "read_image", "save_atoms",
           "simulate_batch", "simulate_frame", "standardize"]
