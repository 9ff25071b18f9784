"""Render one MoS2 HAADF frame with the real multislice simulator (abTEM, the optional
`multislice` extra) and check it: Mo columns brighter than S2 columns, both above background;
print the S2/Mo column ratio. It needs `pip install 'activescope[multislice]'` and about 15 s,
so it is a script, not part of the test suite.

    python benchmarks/multislice_check.py
"""

import numpy as np

from activescope.microscopy.sim import multislice


def main() -> None:
    frame = multislice.multislice_frame("mos2", size=64, pixel_size=0.1, dose=float("inf"), seed=1, source_fwhm=0.0)
    atoms = frame.atoms
    row, col = np.rint(atoms["y"]).astype(int), np.rint(atoms["x"]).astype(int)
    value = frame.image[row, col] - frame.image.min()
    cls = atoms["cls"].to_numpy()
    metal, chalcogen = value[cls == 1].mean(), value[cls == 2].mean()
    assert metal > chalcogen > 0, (metal, chalcogen)
    assert frame.params["renderer"] == "abtem-multislice"
    print(f"abTEM MoS2 frame: S2/Mo column ratio {chalcogen / metal:.2f}")


if __name__ == "__main__":
    main()
