"""Atom finding and its scoring: networks applied to images, atom tables, metrics, overlays.

``predict`` runs a trained network on images, ``locate`` turns class-probability maps into atom
tables, ``metrics`` scores found atoms against ground truth and ``overlay`` draws them on the
image (it loads matplotlib, so import it only where a PNG is wanted).
"""
