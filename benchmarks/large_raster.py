"""Peak memory on a 20,000 x 20,000 px GeoTIFF made from a real scene: decimated read, and cut into chips.

    python benchmarks/large_raster.py [--size 20000] [--out DIR]

The raster repeats `naip_2009.tif` (RGB, mirrored at the seams so it has no hard edges) over a 20,000 px
square, tiled 512 x 512 and deflate-compressed, with the scene's CRS and 5 m pixels. It is never read
whole: each measurement runs in a fresh process and reports its peak RSS (ru_maxrss), beside the RSS of
the same process before the read, and the size of the raster decoded whole.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCENE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scenes" / "naip_2009.tif"


def make_large_raster(
    path: Path, size: int = 20_000, source: Path = SCENE, block: int = 512, compress: str = "deflate"
) -> Path:
    """Write `path`: `source`'s first three bands repeated (mirrored) over size x size px, block by block
    (`compress` jpeg makes a file about 8x smaller, for tests)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(source) as src:
        scene = src.read([1, 2, 3])
        profile = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "count": 3,
            "dtype": "uint8",
            "crs": src.crs,
            "transform": src.transform,
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "compress": compress,
            **({"zlevel": 1, "photometric": "RGB"} if compress == "deflate" else {"photometric": "YCBCR"}),
        }
    # One period of the mirrored pattern, so any window is a slice of it.
    period = np.concatenate([scene, scene[:, ::-1]], axis=1)
    period = np.concatenate([period, period[:, :, ::-1]], axis=2)
    ph, pw = period.shape[1:]
    rows = np.arange(size) % ph
    tmp = path.with_name(path.name + ".tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r in range(0, size, block):
            h = min(block, size - r)
            strip = period[:, rows[r : r + h]]
            for c in range(0, size, block):
                w = min(block, size - c)
                dst.write(strip[:, :, np.arange(c, c + w) % pw], window=Window(c, r, w, h))
    tmp.rename(path)
    return path


PROBE = """
import json, resource, sys, time
from pathlib import Path
mode, path = sys.argv[1], Path(sys.argv[2])
from hashidx.data.images import load_image
from hashidx.data.chips import Tiling, tile_items
import rasterio, numpy as np
load_image(Path(sys.argv[3]), 224)  # libraries and GDAL warmed on a small file first
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "single":
    out = load_image(path, 224)
    n = 1
else:
    chips = tile_items([(path.name, path)], Tiling(int(mode)))
    n = len(chips.items)
    for name, chip in chips.items[:: max(1, n // 16)]:
        out = load_image(chip, 224)
print(json.dumps({"mode": mode, "rss_before_mb": before / 1024, "peak_rss_mb":
    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.perf_counter() - t0, "chips": n}))
"""


def measure(path: Path, mode: str, small: Path) -> dict:
    """Peak RSS of a fresh process reading `path` decimated (mode "single") or cut into chips of `mode` px."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(path), str(small)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=None, help="Where to write the raster [default: a temp folder].")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        t0 = time.perf_counter()
        big = make_large_raster(folder / f"large_{args.size}.tif", args.size)
        made = time.perf_counter() - t0
        rows = [measure(big, mode, SCENE.with_name("sentinel2_tci.tif")) for mode in ("single", "256", "4096")]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "raster": f"{args.size} x {args.size} px, 3 bands uint8, tiled 512, deflate; written in {made:.0f} s",
        "decoded_whole_mb": args.size * args.size * 3 / 2**20,
        "rows": rows,
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
