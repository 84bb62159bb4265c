"""NDMI = (B8A - B11) / (B8A + B11), the normalized difference moisture index, for flow's `script`
node (see docs/scripts.md).

flow runs this with the node's inputs written into the current directory (also named by
FLOW_SCRIPT_DIR): `cube.npy`, the masked reflectance as float32 (time, band, y, x) with NaN for
nodata, and `cube.json`, its grid, band names and times. The script writes `output.npy`.

    python3 ndmi.py [--eps E] [--append]

--eps E    leave pixels whose B8A + B11 is within E of zero as NaN (default 0: only exact zero)
--append   output the cube with NDMI appended as its last band (band names in output.json),
           instead of NDMI alone (named by the recipe's `bands`)
"""

import argparse
import json

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--eps", type=float, default=0.0)
parser.add_argument("--append", action="store_true")
args = parser.parse_args()

cube = np.load("cube.npy")  # (time, band, y, x), float32
with open("cube.json") as f:
    meta = json.load(f)
bands = meta["bands"]  # ["B01", ..., "B8A"]: the order of the band axis
nir = cube[:, bands.index("B8A")]  # (time, y, x)
swir = cube[:, bands.index("B11")]

total = nir + swir
with np.errstate(divide="ignore", invalid="ignore"):
    ndmi = (nir - swir) / total
# NaN in (a nodata pixel) is NaN out; so is a pixel without reflectance in either band.
ndmi[np.abs(total) <= args.eps] = np.nan
ndmi = ndmi[:, np.newaxis].astype(np.float32)  # (time, 1, y, x)

if args.append:
    out = np.concatenate([cube, ndmi], axis=1)
    with open("output.json", "w") as f:
        json.dump({"bands": bands + ["NDMI"]}, f)
else:
    out = ndmi
np.save("output.npy", out)
