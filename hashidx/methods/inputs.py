"""What images a command reads and how: datasets and image lists cut into chips, and the bands and scaling."""

from __future__ import annotations

from pathlib import Path

from hashidx.data.chips import Tiled, Tiling, tile_items
from hashidx.data.datasets import Dataset, load_dataset
from hashidx.data.rasters import Radiometry, fit_radiometry, parse_bands_like
from hashidx.errors import HashidxError
from hashidx.io.progress import inform, warn


def recorded_radiometry(path: Path) -> Radiometry:
    """The bands and scaling a feature cache or model.pt records (`--scale FILE` reuses them)."""
    if path.suffix.lower() in (".h5", ".hdf5"):
        from hashidx.features.cache import FeatureCache

        return FeatureCache.load(path, slice(0, 0)).radiometry
    from hashidx.methods.checkpoints import load_checkpoint

    return Radiometry.from_attrs(load_checkpoint(path)[1])


def report_tiles(tiled: Tiled, tiling: Tiling) -> None:
    inform(
        f"cut {len(tiled.skipped)} scene(s) into {len(tiled.items)} chips of {tiling.size} px (stride "
        f"{tiling.stride}); {tiled.n_skipped} skipped with under {tiling.min_valid:.0%} valid pixels"
    )


def dataset_inputs(
    source: str | Path,
    bands: str | None = None,
    scale: str | None = None,
    tiling: Tiling | None = None,
    seed: int = 0,
    labels_required: bool = True,
) -> tuple[Dataset, Radiometry]:
    """DATA (class folders or a list file), cut into chips with `tiling`, and the bands and scaling its images are
    read with: --bands, and --scale auto (percentiles over a sample), LO:HI pairs, or a file whose choice to reuse.
    Without `labels_required` an unlabelled archive (a folder of scenes, one raster, a list of paths) is read too."""
    ds = load_dataset(source, labels_required)
    if tiling is not None:
        ds, tiled = ds.tiled(tiling)
        report_tiles(tiled, tiling)
    recorded = recorded_radiometry(Path(scale)) if scale and Path(scale).is_file() else None
    radiometry, notes = fit_radiometry([ds.absolute(i) for i in range(len(ds))], bands, scale, seed, recorded)
    for note in notes:
        warn(note)
    if radiometry.bands or radiometry.how != "8-bit /255":
        inform(f"reading {radiometry.describe()}")
    return ds, radiometry


def image_inputs(
    items: list[tuple[str, Path]], radiometry: Radiometry, bands: str | None = None, tiling: Tiling | None = None
) -> tuple[list[tuple[str, Path]], Radiometry]:
    """Query or added images, cut into chips with `tiling`, and the bands and scaling to read them with: the
    model's. A --bands other than the model's is refused; for a model of each file's RGB, --bands names which
    bands of these files are R, G, B (NAIP's 1,2,3 of four)."""
    if bands is not None:
        chosen = parse_bands_like(bands, [p for _, p in items])
        if chosen != (radiometry.bands or chosen[:3]) or len(chosen) != radiometry.channels:
            raise HashidxError(
                f"--bands {bands}: the model reads {radiometry.describe()}; drop --bands (the model's choice is "
                "used for every image) or retrain on these bands"
            )
        radiometry = Radiometry(chosen, radiometry.scale, radiometry.how)
    if tiling is not None:
        tiled = tile_items(items, tiling)
        report_tiles(tiled, tiling)
        items = tiled.items
    return items, radiometry
