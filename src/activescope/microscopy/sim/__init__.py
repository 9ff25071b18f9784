"""Simulated training data: projected crystal lattices and labelled HAADF-STEM frames.

Pure NumPy/SciPy (no torch): ``lattices`` builds the projected atom columns of each supported
material, ``simulate`` renders frames with exact atom tables and per-pixel class masks (with
optional domain randomisation: contrast exponent, sublattice ratios, thickness, probe shape,
background and scan noise). ``multislice`` renders physics-based HAADF validation frames with
abTEM (optional extra ``activescope[multislice]``); keep those out of training.
"""
