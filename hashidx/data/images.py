"""Image decoding to float arrays: photos through PIL as RGB, rasters and chips through GDAL (data.rasters)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from hashidx.data.rasters import RGB, Radiometry, is_raster, read_raster
from hashidx.engines.local import AHEAD, prefetch
from hashidx.errors import HashidxError


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    # Alpha is dropped rather than composited: aerial tiles use it for no-data borders.
    return img.convert("RGB")


def _pil_readable(img: Image.Image) -> bool:
    """8-bit RGB-like images within PIL's decompression-bomb limit: decoded as before rasters were read by GDAL."""
    return img.mode in _PIL_MODES and img.width * img.height <= (Image.MAX_IMAGE_PIXELS or 1 << 62)


_PIL_MODES = ("RGB", "L", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "1", "RGBX")


def load_image(path: str | Path, size: int, radiometry: Radiometry = RGB) -> np.ndarray:
    """Decode `path` to a float32 size x size x C array in [0, 1] (C: the radiometry's channels, 3 for RGB).

    8-bit JPEG/PNG photos are decoded by PIL (bilinear resize); everything else (GeoTIFF, 16-bit, many bands,
    chips `scene.tif#c,r,w,h`, images past PIL's size limit) is read by GDAL, decimated while reading.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:  # a chip's name is not a file: its scene is
        raise HashidxError(f"{path}: empty file (0 bytes); replace the file or remove it from the dataset")
    if radiometry.bands or is_raster(path):
        return read_raster(path, size, radiometry)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd EXIF; a real failure still raises below
            try:
                img = Image.open(path)
            except Image.DecompressionBombError:  # never decoded whole: GDAL reads it decimated
                return read_raster(path, size, radiometry)
            with img:
                if not _pil_readable(img):
                    return read_raster(path, size, radiometry)
                img.load()
                rgb = _to_rgb(img).resize((size, size), Image.Resampling.BILINEAR)
    except HashidxError:
        raise
    except FileNotFoundError:
        raise HashidxError(f"{path}: image not found; fix the path or remove it from the list") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise HashidxError(
            f"{path}: cannot decode image ({exc}); replace the file or remove it from the dataset"
        ) from None
    return np.asarray(rgb, dtype=np.float32) / 255.0


# Threads decoding ahead of the backbone (engines.local.AHEAD): JPEG/TIFF decoding and PIL's resize release
# the GIL, so the backbone never waits on them (benchmarks/runtimes.py measures 0, 1 and 2).
DECODE_WORKERS = AHEAD


def decode_items(
    decode: Callable[[Path], np.ndarray], items: Sequence[tuple[int, Path]]
) -> list[tuple[int, np.ndarray | HashidxError]]:
    """(position, array, or the HashidxError saying why it is unreadable) for each (position, path)."""
    out: list[tuple[int, np.ndarray | HashidxError]] = []
    for i, path in items:
        try:
            out.append((i, decode(path)))
        except HashidxError as exc:
            out.append((i, exc))
    return out


def decode_ahead(
    paths: Sequence[Path],
    decode: Callable[[Path], np.ndarray],
    chunks: Sequence[Sequence[int]],
    workers: int = DECODE_WORKERS,
) -> Iterator[list[tuple[int, np.ndarray | HashidxError]]]:
    """Each chunk of positions decoded (decode_items), in order; with `workers` > 0 up to workers + 1 chunks are
    decoded on threads ahead of the consumer."""
    return prefetch(lambda chunk: decode_items(decode, [(i, paths[i]) for i in chunk]), chunks, workers)


def keep_readable(
    decoded: list[tuple[int, np.ndarray | HashidxError]], on_error: str, skipped: list[tuple[int, str]]
) -> tuple[list[int], list[np.ndarray]]:
    """Positions and arrays of a decoded chunk; an unreadable image raises (on_error "fail") or joins `skipped`."""
    ok, arrays = [], []
    for i, item in decoded:
        if isinstance(item, HashidxError):
            if on_error != "skip":
                raise item
            skipped.append((i, str(item)))
        else:
            ok.append(i)
            arrays.append(item)
    return ok, arrays
