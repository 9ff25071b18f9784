"""Atom-resolved microscopy: simulated frames, atom finding, detection metrics and image I/O.

Subpackages, lowest layer first (each imports only those before it): ``sim`` makes labelled STEM
frames, ``nets`` holds the segmentation networks and their checkpoints, ``find`` runs them and
turns class-probability maps into atom tables (``find.locate``), scores them against ground truth
(``find.metrics``) and draws them (``find.overlay``, loads matplotlib), ``training`` trains one
network and ``ensemble`` runs, trains and self-trains (ELIT) ensembles; ``ivae`` learns
rotation-invariant descriptors of atom-centred patches and ``imspec`` maps patches to local
spectra and back (both save through ``nets.kinded``). ``io`` reads real images
and checks output destinations. The names below come from ``sim``, ``find.locate``,
``find.metrics`` and ``io`` and load on first use (PEP 562), so importing a subpackage (the CLI's
help) pays for neither torch nor pandas.
"""

from typing import TYPE_CHECKING

from activescope.engine.lazy import lazy_exports

_EXPORTS = {
    "find_atoms": "activescope.microscopy.find.locate",
    "read_atoms": "activescope.microscopy.find.locate",
    "save_atoms": "activescope.microscopy.find.locate",
    "MatchResult": "activescope.microscopy.find.metrics",
    "detection_scores": "activescope.microscopy.find.metrics",
    "match_atoms": "activescope.microscopy.find.metrics",
    "read_image": "activescope.microscopy.io",
    "LATTICES": "activescope.microscopy.sim.lattices",
    "lattice_classes": "activescope.microscopy.sim.lattices",
    "Frame": "activescope.microscopy.sim.simulate",
    "SimConfig": "activescope.microscopy.sim.simulate",
    "simulate_batch": "activescope.microscopy.sim.simulate",
    "simulate_frame": "activescope.microscopy.sim.simulate",
    "standardize": "activescope.microscopy.sim.simulate",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from activescope.microscopy.find.locate import find_atoms, read_atoms, save_atoms
    from activescope.microscopy.find.metrics import MatchResult, detection_scores, match_atoms
    from activescope.microscopy.io import read_image
    from activescope.microscopy.sim.lattices import LATTICES, lattice_classes
    from activescope.microscopy.sim.simulate import Frame, SimConfig, simulate_batch, simulate_frame, standardize
