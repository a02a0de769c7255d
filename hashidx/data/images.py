"""Image decoding to RGB float arrays: grey, palette, RGBA, CMYK and 16-bit converted; other 4+-band images refused."""

from __future__ import annotations

import struct
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from hashidx.errors import HashidxError


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    if img.mode in ("RGB",):
        return img
    if img.mode in ("L", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "1", "RGBX"):
        # Alpha is dropped rather than composited: aerial tiles use it for no-data borders.
        return img.convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Stretch 16-bit / float data by its own range so dark scenes stay visible.
        a = np.asarray(img, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    raise HashidxError(f"{path}: unsupported image mode {img.mode!r}; convert it to an 8-bit RGB JPEG/PNG/TIFF")


def tiff_samples(path: Path) -> int | None:
    """SamplesPerPixel of a TIFF's first image, read from its header (PIL cannot open multispectral TIFFs)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head[:4] not in (b"II*\x00", b"MM\x00*"):
                return None
            end = "<" if head[:2] == b"II" else ">"
            fh.seek(struct.unpack(end + "I", head[4:8])[0])
            (count,) = struct.unpack(end + "H", fh.read(2))
            for _ in range(count):
                tag, typ, _, value = struct.unpack(end + "HHI4s", fh.read(12))
                if tag == 277:  # SamplesPerPixel: SHORT stored left-justified in the value field
                    return struct.unpack(end + ("H" if typ == 3 else "I"), value[:2] if typ == 3 else value)[0]
    except (OSError, struct.error):
        return None
    return None


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode `path` to a float32 HxWx3 array in [0, 1], resized to size x size (bilinear)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise HashidxError(f"{path}: empty file (0 bytes); replace the file or remove it from the dataset")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd EXIF; a real failure still raises below
            with Image.open(path) as img:
                bands = len(img.getbands())
                if bands > 4 or (bands == 4 and img.mode not in ("RGBA", "CMYK", "RGBX")):
                    raise HashidxError(f"{path}: {bands}-band image; export an RGB composite (3 bands) first")
                img.load()
                rgb = _to_rgb(img, path).resize((size, size), Image.Resampling.BILINEAR)
    except HashidxError:
        raise
    except FileNotFoundError:
        raise HashidxError(f"{path}: image not found; fix the path or remove it from the list") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        samples = tiff_samples(path)
        if samples is not None and samples > 3:
            raise HashidxError(f"{path}: {samples}-band TIFF; export an RGB composite (3 bands) first") from None
        raise HashidxError(
            f"{path}: cannot decode image ({exc}); replace the file or remove it from the dataset"
        ) from None
    return np.asarray(rgb, dtype=np.float32) / 255.0


# Threads decoding ahead of the backbone: JPEG/TIFF decoding and PIL's resize release the GIL, so
# the backbone never waits on them (benchmarks/runtimes.py measures 0, 1 and 2).
DECODE_WORKERS = 2


def _decode_chunk(
    decode: Callable[[Path], np.ndarray], paths: Sequence[Path], positions: Sequence[int]
) -> list[tuple[int, np.ndarray | HashidxError]]:
    out: list[tuple[int, np.ndarray | HashidxError]] = []
    for i in positions:
        try:
            out.append((i, decode(paths[i])))
        except HashidxError as exc:
            out.append((i, exc))
    return out


def decode_ahead(
    paths: Sequence[Path],
    decode: Callable[[Path], np.ndarray],
    chunks: Sequence[Sequence[int]],
    workers: int = DECODE_WORKERS,
) -> Iterator[list[tuple[int, np.ndarray | HashidxError]]]:
    """Each chunk of positions as (position, array, or the HashidxError saying why it is unreadable), in order;
    with `workers` > 0 up to workers + 1 chunks are decoded on threads ahead of the consumer."""
    if workers <= 0:
        for chunk in chunks:
            yield _decode_chunk(decode, paths, chunk)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="hashidx-decode")
    pending: deque[Future] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(_decode_chunk, decode, paths, chunk))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
