"""Atom-resolved microscopy: simulated frames, atom finding, detection metrics and image I/O.

``simulate`` makes labelled STEM frames, ``locate`` turns class-probability maps into atom
tables, ``metrics`` scores them against ground truth, ``imageio`` reads real images and
``overlay`` draws found atoms on an image. Networks, training and ensembles live in ``nets``,
``train`` and ``ensemble``.
"""

from activescope.microscopy.lattices import LATTICES, lattice_classes
from activescope.microscopy.simulate import Frame, SimConfig, simulate_batch, simulate_frame

__all__ = ["LATTICES", "Frame", "SimConfig", "lattice_classes", "simulate_batch",
           "simulate_frame"]
