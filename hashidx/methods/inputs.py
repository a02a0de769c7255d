"""What images a command reads and how: datasets and image lists cut into chips, and the bands and scaling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hashidx.data.chips import Tiled, Tiling, tile_items
from hashidx.data.datasets import Dataset, load_dataset
from hashidx.data.queryfile import image_list
from hashidx.data.rasters import Radiometry, fit_radiometry, parse_bands_like, parse_scale
from hashidx.data.stac import StacRecord, band_numbers, catalog_dataset, is_stac
from hashidx.errors import HashidxError
from hashidx.io.progress import inform, warn


def recorded_radiometry(path: Path) -> Radiometry:
    """The bands and scaling a feature cache or model.pt records (`--scale FILE` reuses them)."""
    if path.suffix.lower() in (".h5", ".hdf5"):
        from hashidx.features.cache import FeatureCache

        return FeatureCache.load(path, slice(0, 0)).radiometry
    from hashidx.methods.encoder import load_encoder

    return load_encoder(path).radiometry


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
    label_property: str | None = None,
) -> tuple[Dataset, Radiometry]:
    """DATA (class folders, a list file, or a STAC catalog), cut into chips with `tiling`, and the bands and scaling
    its images are read with: --bands, and --scale auto (percentiles over a sample), LO:HI pairs, or a file whose
    choice to reuse. Without `labels_required` an unlabelled archive (a folder of scenes, one raster, a list of
    paths, a STAC catalog without `label_property`) is read too."""
    if is_stac(source):
        ds, bands = catalog_dataset(source, bands, label_property, labels_required)
    elif label_property is not None:
        raise HashidxError(f"--label-property {label_property}: {source} is not a STAC catalog; drop the option")
    else:
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


@dataclass
class Source:
    """Query or added images as a command reads them: named items (chips where cut), the bands and scaling to read
    them with, and the STAC records of their files where they came from a catalog."""

    items: list[tuple[str, Path]]
    radiometry: Radiometry
    catalog: dict[Path, StacRecord] | None = None

    def record(self, source: str | Path, model: Radiometry) -> dict:
        """What the added-codes file says of this source: where it came from and how its pixels were read."""
        return {
            "source": str(source),
            "bands": list(self.radiometry.bands),
            "scale": [list(s) for s in self.radiometry.scale],
            "scaling": "the model's" if self.radiometry == model else self.radiometry.how,
        }


def image_inputs(
    source: str | Path | list[tuple[str, Path]],
    radiometry: Radiometry,
    bands: str | None = None,
    tiling: Tiling | None = None,
    scale: str | None = None,
    seed: int = 0,
) -> Source:
    """Query or added images (a list, folder, image or STAC catalog; or named items), cut into chips with
    `tiling`, and the bands and scaling to read them with: the model's. A --bands other than the model's is
    refused; for a model of each file's RGB, --bands names which bands of these files are R, G, B (NAIP's 1,2,3
    of four). `scale` replaces the model's scaling for a source it cannot read (another pixel type or sensor):
    LO:HI pairs, or auto (the 2-98 percentile rule of training, fitted on these images)."""
    catalog = None
    if isinstance(source, list):
        items = source
    elif is_stac(source):
        from hashidx.data.stac import read_catalog, relative_name

        records = read_catalog(source, bands)
        bands = band_numbers(bands, records, Path(source))
        root = Path(source).parent.resolve()
        items = [(relative_name(r.href, root), r.href) for r in records]
        catalog = {r.href: r for r in records}
    else:
        items = image_list(source)
    if bands is not None:
        chosen = parse_bands_like(bands, [p for _, p in items])
        if chosen != (radiometry.bands or chosen[:3]) or len(chosen) != radiometry.channels:
            raise HashidxError(
                f"--bands {bands}: the model reads {radiometry.describe()}; drop --bands (the model's choice is "
                "used for every image) or retrain on these bands"
            )
        radiometry = Radiometry(chosen, radiometry.scale, radiometry.how, radiometry.dtypes)
    if tiling is not None:
        tiled = tile_items(items, tiling)
        report_tiles(tiled, tiling)
        items = tiled.items
    if scale is not None:
        radiometry = source_scaling([p for _, p in items], radiometry, scale, seed)
        inform(f"reading {radiometry.describe()}")
    return Source(items, radiometry, catalog)


def source_scaling(paths: list[Path], model: Radiometry, scale: str, seed: int = 0) -> Radiometry:
    """The model's bands with another scaling: LO:HI pairs as given, or auto fitted on `paths`."""
    if scale == "auto":
        chosen = ",".join(map(str, model.bands)) if model.bands else None
        fitted, _ = fit_radiometry(paths, chosen, None, seed)
        return Radiometry(model.bands, fitted.scale, fitted.how, fitted.dtypes)
    return Radiometry(model.bands, parse_scale(scale, model.channels), "given (--scale)")
