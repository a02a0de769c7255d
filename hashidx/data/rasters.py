"""Rasters through rasterio (GDAL): band choice, one dataset-wide radiometric scaling, windowed and decimated reads."""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashidx.errors import HashidxError

# Read by PIL as today (bit-identical features for RGB photo datasets); every other format goes to GDAL.
PIL_SUFFIXES = (".jpg", ".jpeg", ".png")
# A chip of a scene is named after it: `scene.tif#COL,ROW,WIDTH,HEIGHT` (a pixel window, read on demand).
_CHIP = re.compile(r"^(.*)#(\d+),(\d+),(\d+),(\d+)$")
# Robust per-band range over a sample of the training data: the tails are clouds, shadows and saturated pixels.
PERCENTILES = (2.0, 98.0)
SCALE_SAMPLE = 32  # images whose pixels fix the scaling
SCALE_READ_PX = 256  # each sampled image is read decimated to at most this many pixels a side


@dataclass(frozen=True)
class Window:
    """A pixel window of a raster: column and row offsets, width and height."""

    col: int
    row: int
    width: int
    height: int

    def suffix(self) -> str:
        return f"#{self.col},{self.row},{self.width},{self.height}"


def split_chip(path: str | Path) -> tuple[Path, Window | None]:
    """The file and the window of an item name (`scene.tif#0,0,256,256`); no window for a whole image."""
    m = _CHIP.match(str(path))
    if m is None or Path(path).is_file():
        return Path(path), None
    col, row, width, height = (int(g) for g in m.groups()[1:])
    return Path(m.group(1)), Window(col, row, width, height)


def is_raster(path: Path) -> bool:
    """Whether GDAL reads the item (a chip, or any format but JPEG/PNG) rather than PIL decoding a photo."""
    return path.suffix.lower() not in PIL_SUFFIXES or split_chip(path)[1] is not None


def scene_of(name: str) -> str:
    """An item name without its chip window: what labels and tables know the item by."""
    m = _CHIP.match(name)
    return m.group(1) if m else name


@dataclass(frozen=True)
class Radiometry:
    """Which bands feed the network's channels, in order, and the one linear scaling every image gets.

    `bands` () means each file's own RGB (JPEG/PNG decoded as today, RGB(A) rasters their first three bands).
    `scale` holds (lo, hi) per channel, x → clip((x − lo) / (hi − lo), 0, 1); () means 8-bit /255.
    """

    bands: tuple[int, ...] = ()
    scale: tuple[tuple[float, float], ...] = ()
    how: str = "8-bit /255"
    dtypes: tuple[str, ...] = ()  # the pixel types a fitted scaling was fitted on; () where it was given or 8-bit

    @property
    def channels(self) -> int:
        return len(self.bands) or 3

    def attrs(self) -> dict[str, str]:
        """What a feature cache's attributes and a model's config record."""
        out = {
            "bands": json.dumps(list(self.bands)),
            "scale": json.dumps([list(s) for s in self.scale]),
            "scaling": self.how,
        }
        return {**out, "dtypes": json.dumps(list(self.dtypes))} if self.dtypes else out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Radiometry:
        """The recorded choice; files from before bands were recorded are RGB /255."""
        try:
            bands = tuple(int(b) for b in json.loads(str(attrs.get("bands", "[]"))))
            scale = tuple((float(lo), float(hi)) for lo, hi in json.loads(str(attrs.get("scale", "[]"))))
            dtypes = tuple(str(t) for t in json.loads(str(attrs.get("dtypes", "[]"))))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"malformed 'bands'/'scale' record ({exc})") from None
        return cls(bands, scale, str(attrs.get("scaling", "8-bit /255")), dtypes)

    def describe(self) -> str:
        bands = ",".join(map(str, self.bands)) if self.bands else "RGB"
        return f"bands {bands}, {self.how}"

    def rgb_view(self) -> Radiometry:
        """The first three channels (a single one thrice): what a thumbnail shows."""
        if not self.bands:
            return self
        pick = [0, 1, 2] if len(self.bands) >= 3 else [0, 0, 0]
        scale = tuple(self.scale[i] for i in pick) if self.scale else ()
        return Radiometry(tuple(self.bands[i] for i in pick), scale, self.how, self.dtypes)

    def same_as(self, other: Radiometry) -> bool:
        return self.bands == other.bands and np.allclose(self.scale or [(0, 255)], other.scale or [(0, 255)])


RGB = Radiometry()


# GDAL's block cache defaults to 5% of RAM, and a scene read decimated passes every block through it: capped
# here so that memory stays bounded by what is read, not by the scene (set GDAL_CACHEMAX to choose otherwise).
GDAL_CACHE_MB = 128


def _rasterio() -> Any:
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
    import rasterio  # imported on first raster: JPEG datasets never pay for GDAL

    # A photo read through GDAL (--bands on a JPEG) has no geotransform, and rasterio would say so with a source
    # line at every read; footprints() tells of rasters without a CRS once, in hashidx's words.
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    return rasterio


def open_raster(path: Path) -> Any:
    """rasterio dataset of `path`, or a one-line error naming the file."""
    rasterio = _rasterio()
    if not path.is_file():
        raise HashidxError(f"{path}: image not found; fix the path or remove it from the list")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning: footprints() says it once per run
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise HashidxError(
            f"{path}: cannot read raster ({str(exc).splitlines()[0][:160]}); "
            "replace the file or remove it from the dataset"
        ) from None


def band_names(src: Any) -> list[str]:
    """Each band's description, else its colour interpretation (red, green, blue, alpha, undefined...)."""
    return [d or ci.name for d, ci in zip(src.descriptions, src.colorinterp)]


def bands_summary(src: Any) -> str:
    """`gray, undefined x12`: the band names, runs of equal ones folded."""
    runs: list[list] = []
    for name in band_names(src):
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return ", ".join(n if k == 1 else f"{n} x{k}" for n, k in runs)


def parse_bands(text: str, src: Any, path: Path) -> tuple[int, ...]:
    """`--bands` against a raster: 1-based indices, ranges (5-13) or the file's band names (B04, red)."""
    names = [n.lower() for n in band_names(src)]
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if re.fullmatch(r"\d+-\d+", part):
            lo, hi = (int(x) for x in part.split("-"))
            out += range(lo, hi + 1) if lo <= hi else range(lo, hi - 1, -1)
        elif part.isdigit():
            out.append(int(part))
        elif part.lower() in names and names.count(part.lower()) == 1:
            out.append(names.index(part.lower()) + 1)
        else:
            raise HashidxError(
                f"--bands {text}: {part!r} is not a band of {path} (its {src.count}: {bands_summary(src)}); "
                "give 1-based band numbers like 4,3,2, or a band's name where the file has one"
            )
    if not out:
        raise HashidxError(f"--bands {text!r}: name at least one band, e.g. --bands 4,3,2")
    check_bands(tuple(out), src, path)
    return tuple(out)


def check_bands(bands: tuple[int, ...], src: Any, path: Path) -> None:
    bad = [b for b in bands if not 1 <= b <= src.count]
    if bad:
        raise HashidxError(
            f"{path}: band {bad[0]} out of range, the file has {src.count} band(s); "
            f"pick bands 1-{src.count} with --bands"
        )


# Band names (descriptions, else colour interpretations) of the false-colour composite's near-infrared, red and green.
_COMPOSITE_NAMES = (r"b0?8|nir|nir08", r"b0?4|red", r"b0?3|green")
SENTINEL2_BANDS = 13  # B01-B12 with B8A after B08: Sentinel-2 L1C's order, and EuroSAT's


def false_colour(src: Any) -> tuple[tuple[int, int, int], str] | None:
    """Near-infrared, red and green of a multispectral raster, where its band names say which they are or it has
    Sentinel-2's 13 bands; and how they were found. None otherwise."""
    names = [n.lower() for n in band_names(src)]
    found = [[i + 1 for i, n in enumerate(names) if re.fullmatch(pattern, n)] for pattern in _COMPOSITE_NAMES]
    if all(len(f) == 1 for f in found):
        return (found[0][0], found[1][0], found[2][0]), "by the bands' names"
    if src.count == SENTINEL2_BANDS:
        return (8, 4, 3), "13 bands taken in Sentinel-2's order, B01-B12 with B8A after B08"
    return None


def default_bands(src: Any, path: Path) -> tuple[tuple[int, ...], str | None]:
    """The bands read when `--bands` is not given, and a note when that was a choice worth saying; other
    multi-band files are refused (a dataset of them records its own choice: `recorded_default`)."""
    ci = [c.name for c in src.colorinterp]
    if src.count == 3 or (src.count == 4 and ci[3] == "alpha"):
        return (1, 2, 3), None
    if src.count == 1 or (src.count == 2 and ci[1] == "alpha"):
        return (1, 1, 1), (
            f"{path}: single-band raster, read as grey (band 1 as R, G and B); --bands 1 gives a 1-channel model"
        )
    raise HashidxError(
        f"{path}: {src.count}-band raster ({bands_summary(src)}); choose the bands with --bands, "
        f"e.g. --bands 1,2,3 (first three listed take the network's R, G, B) or --bands 1-{src.count}"
    )


def recorded_default(path: Path) -> tuple[tuple[int, ...], str | None]:
    """The bands a new dataset records when `--bands` is not given, judged on its first raster, and the note on
    them. A multispectral file whose bands are known is read as the false-colour composite (near-infrared, red,
    green), which beat true colour and all bands on EuroSAT validation splits (docs/choices-measured.md). () keeps
    each file's own RGB or grey, and leaves any other file to be refused (or skipped) where it is read."""
    file, _ = split_chip(path)
    try:
        with open_raster(file) as src:
            count = src.count
            try:
                default_bands(src, file)
                return (), None  # an RGB(A) or grey file
            except HashidxError:
                composite = false_colour(src)
    except HashidxError:
        return (), None
    if composite is None:
        return (), None
    bands, how = composite
    listed = ",".join(map(str, bands))
    return bands, (
        f"{file}: {count}-band raster read as false colour: near-infrared, red, green = bands {listed} ({how}); "
        "--bands chooses others, e.g. Sentinel-2's true colour with --bands 4,3,2"
    )


def check_dtype(dtype: str, radiometry: Radiometry, path: Path, complex_only: bool = False) -> None:
    """Refuse pixels the recorded scaling cannot read: complex data, and another type than it was made for."""
    if dtype.startswith("complex"):  # rasterio's complex64/complex128/complex_int16
        raise HashidxError(
            f"{path}: complex {dtype} pixels (an SLC?); hashidx reads real values: make an amplitude raster "
            "(|z| of each pixel, e.g. a GDAL VRT band with the 'mod' pixel function) and read that instead"
        )
    if complex_only:
        return
    if not radiometry.scale and dtype != "uint8":
        raise HashidxError(
            f"{path}: {dtype} pixels, but the scaling recorded with these bands is for 8-bit images; give one "
            "with --scale LO:HI (e.g. --scale 0:3000), or --scale auto to fit it on these images"
        )
    # An 8-bit scaling recorded before the pixel types were is still one for 8-bit images.
    made_for = radiometry.dtypes or (("uint8",) if radiometry.how == "8-bit /255" else ())
    if made_for and dtype not in made_for:
        raise HashidxError(
            f"{path}: {dtype} pixels, but the recorded scaling was made for {'/'.join(made_for)} "
            "images; give one with --scale LO:HI, or --scale auto to fit it on these images"
        )


def _scale(a: np.ndarray, scale: Sequence[tuple[float, float]]) -> np.ndarray:
    """Band-first array → [0,1] with the dataset's scaling (8-bit data without one: /255)."""
    if not scale:
        return a.astype(np.float32) / 255.0
    lo = np.asarray([s[0] for s in scale], np.float32).reshape(-1, 1, 1)
    hi = np.asarray([s[1] for s in scale], np.float32).reshape(-1, 1, 1)
    return np.clip((a.astype(np.float32) - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


@contextlib.contextmanager
def _gdal_errors(path: Path) -> Iterator[None]:
    """GDAL's read failures (a truncated block, a bad compression stream) as one line naming the file."""
    try:
        yield
    except _rasterio().errors.RasterioError as exc:
        raise HashidxError(
            f"{path}: cannot read raster pixels ({str(exc).splitlines()[0][:160]}); replace the file "
            "or remove it from the dataset"
        ) from None


def _rio_window(src: Any, path: Path, window: Window | None) -> Any:
    """rasterio's window for `window` (None: the whole raster), refused when it leaves the raster."""
    if window is None:
        return None
    from rasterio.windows import Window as RioWindow

    if window.col + window.width > src.width or window.row + window.height > src.height:
        raise HashidxError(
            f"{path}{window.suffix()}: window outside the {src.width}x{src.height} raster; fix the chip name or re-tile"
        )
    return RioWindow(window.col, window.row, window.width, window.height)


def read_mask(src: Any, path: Path, shape: tuple[int, int], window: Window | None = None) -> np.ndarray:
    """Validity (no-data, alpha, mask) of a window or the whole raster at `shape`, decimated while GDAL reads it."""
    from rasterio.enums import Resampling

    win = _rio_window(src, path, window)
    with _gdal_errors(path):
        return src.dataset_mask(window=win, out_shape=shape, resampling=Resampling.nearest) > 0


def read_validity(path: str | Path, size: int) -> np.ndarray:
    """Which pixels of a raster (or a chip `scene.tif#c,r,w,h`) hold data, at size x size: what a picture of it
    shows as transparent."""
    file, window = split_chip(path)
    with open_raster(file) as src:
        return read_mask(src, file, (size, size), window)


def _read(src: Any, path: Path, bands: tuple[int, ...], window: Window | None, shape: tuple[int, int], how: str):
    """Bands and validity mask of a window (or the whole raster) resampled to `shape` while GDAL reads them."""
    from rasterio.enums import Resampling

    win = _rio_window(src, path, window)
    with _gdal_errors(path):
        a = src.read(list(bands), window=win, out_shape=(len(bands), *shape), resampling=Resampling[how])
    return a, read_mask(src, path, shape, window)


def _bands_of(src: Any, path: Path, radiometry: Radiometry) -> tuple[int, ...]:
    if radiometry.bands:
        check_bands(radiometry.bands, src, path)
        return radiometry.bands
    return default_bands(src, path)[0]


def read_raster(path: str | Path, size: int, radiometry: Radiometry = RGB) -> np.ndarray:
    """A raster (or a chip `scene.tif#c,r,w,h` of one) as float32 size x size x C in [0, 1].

    GDAL resamples while reading (bilinear; from overviews where the file has them), so a scene of any
    size costs memory for `size` pixels, not for the scene. No-data, alpha and mask pixels read as 0.
    """
    file, window = split_chip(path)
    with open_raster(file) as src:
        check_dtype(src.dtypes[0], radiometry, file, complex_only=True)  # before bands: an SLC has one or two
        bands = _bands_of(src, file, radiometry)
        check_dtype(src.dtypes[bands[0] - 1], radiometry, file)
        a, valid = _read(src, file, bands, window, (size, size), "bilinear")
        pixels = _scale(a, radiometry.scale)
    pixels *= valid[None]
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))


def _sample_pixels(path: Path, radiometry: Radiometry) -> tuple[np.ndarray, str, str | None]:
    """Valid pixels (C x n) of an image or chip read decimated, its data type, and a note on its default bands."""
    file, window = split_chip(path)
    with open_raster(file) as src:
        check_dtype(src.dtypes[0], radiometry, file, complex_only=True)
        if radiometry.bands:
            bands, note = radiometry.bands, None
            check_bands(bands, src, file)
        else:
            bands, note = default_bands(src, file)
        w, h = (window.width, window.height) if window else (src.width, src.height)
        f = max(1.0, max(w, h) / SCALE_READ_PX)
        a, valid = _read(src, file, bands, window, (max(1, int(h / f)), max(1, int(w / f))), "nearest")
        return a[:, valid], src.dtypes[bands[0] - 1], note


def parse_scale(text: str, channels: int) -> tuple[tuple[float, float], ...]:
    """`--scale LO:HI` (every band) or `LO:HI,LO:HI,...` (one per band, in --bands order)."""
    try:
        pairs = [tuple(float(x) for x in part.split(":")) for part in text.split(",")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or not p[1] > p[0] for p in pairs) or len(pairs) not in (1, channels):
        raise HashidxError(
            f"--scale {text}: give LO:HI with LO < HI, once for all bands or once per band ({channels}), e.g. "
            "--scale 0:3000; or 'auto', or a feature cache / model.pt whose scaling to reuse"
        )
    return tuple((p[0], p[1]) for p in pairs) * (channels if len(pairs) == 1 else 1)


def fit_radiometry(
    paths: Sequence[Path],
    bands: str | None = None,
    scale: str | None = None,
    seed: int = 0,
    recorded: Radiometry | None = None,
) -> tuple[Radiometry, list[str]]:
    """The dataset's bands and scaling, and notes worth saying; JPEG/PNG-only datasets without options keep
    today's RGB /255.

    `bands` is --bands (checked against the first raster); `scale` is 'auto' (None) or LO:HI pairs;
    `recorded` (from a feature cache or model given as --scale) is reused as it is.
    """
    if recorded is not None:
        if bands and parse_bands_like(bands, paths) != recorded.bands:
            raise HashidxError(f"--bands {bands} differs from the recorded {recorded.describe()}; drop --bands")
        return recorded, []
    rasters = [p for p in paths if is_raster(p)]
    if bands is None and not rasters and scale is None:
        return RGB, []
    chosen: tuple[int, ...] = () if bands is None else parse_bands_like(bands, rasters or list(paths))
    notes: list[str] = []
    if bands is None and rasters:
        chosen, note = recorded_default(Path(rasters[0]))
        notes += [note] if note else []
    if scale is not None and scale != "auto":
        return Radiometry(chosen, parse_scale(scale, len(chosen) or 3), "given (--scale)"), notes
    rng = np.random.default_rng(seed)
    pool = rasters or list(paths)
    sample = [pool[i] for i in sorted(rng.choice(len(pool), min(SCALE_SAMPLE, len(pool)), replace=False))]
    parts: list[np.ndarray] = []
    types: set[str] = set()
    errors: list[HashidxError] = []
    for p in sample:
        try:
            px, dtype, note = _sample_pixels(Path(p), Radiometry(chosen))
        except HashidxError as exc:  # the extraction reports the file (or skips it, with --on-error skip)
            errors.append(exc)
            continue
        parts.append(px)
        types.add(dtype)
        notes += [note] if note and not notes else []
    if not parts:
        if bands is None:
            return RGB, []
        raise errors[0]
    channels = len(chosen) or 3
    if types == {"uint8"}:
        eight_bit = Radiometry(chosen, ((0.0, 255.0),) * channels, "8-bit /255", ("uint8",))
        return (RGB if not chosen else eight_bit), notes
    pixels = np.concatenate(parts, axis=1)
    if pixels.shape[1] == 0:
        raise HashidxError(
            f"{sample[0]}: the sampled images have no valid pixels; check their no-data value, or pass --scale"
        )
    lo, hi = np.percentile(pixels.astype(np.float64), PERCENTILES, axis=1)
    hi = np.maximum(hi, lo + 1)
    kinds = "/".join(sorted(types))
    how = f"percentiles {PERCENTILES[0]:g}-{PERCENTILES[1]:g} per band over {len(parts)} images ({kinds})"
    fitted = tuple((float(a), float(b)) for a, b in zip(lo, hi))
    return Radiometry(chosen, fitted, how, tuple(sorted(types))), notes


def parse_bands_like(text: str, paths: Sequence[Path]) -> tuple[int, ...]:
    """--bands resolved against the first raster of `paths` (its band count and names)."""
    first = next((p for p in paths if is_raster(p)), paths[0])
    with open_raster(split_chip(first)[0]) as src:
        return parse_bands(text, src, first)
