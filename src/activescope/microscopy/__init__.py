"""Atom-resolved microscopy: simulated frames, atom finding, detection metrics and image I/O.

``simulate`` makes labelled STEM frames, ``locate`` turns class-probability maps into atom
tables, ``metrics`` scores them against ground truth, ``imageio`` reads real images and
``overlay`` draws found atoms on an image (import it directly: it loads matplotlib).
Networks, training and ensembles live in ``nets``, ``train`` and ``ensemble``.
"""

from activescope.microscopy.imageio import read_image
from activescope.microscopy.lattices import LATTICES, lattice_classes
from activescope.microscopy.locate import find_atoms, read_atoms, save_atoms
from activescope.microscopy.metrics import MatchResult, detection_scores, match_atoms
from activescope.microscopy.simulate import (Frame, SimConfig, simulate_batch, simulate_frame,
                                             standardize)

__all__ = ["LATTICES", "Frame", "MatchResult", "SimConfig", "detection_scores", "find_atoms",
           "lattice_classes", "match_atoms", "read_atoms", "read_image", "save_atoms",
           "simulate_batch", "simulate_frame", "standardize"]
