"""Images and their labels: datasets, decoding, rasters (bands, scaling, chips, footprints), the split,
label-only items, query files, STAC catalogs, downloads."""

from typing import TYPE_CHECKING

from hashidx.io.lazy import lazy_exports

# The names this subpackage exports; each loads its module on first use (hashidx.io.lazy).
if TYPE_CHECKING:
    from hashidx.data.chips import Tiling, tile_items
    from hashidx.data.datasets import IMAGE_SUFFIXES, Dataset, load_dataset, read_list
    from hashidx.data.download import CATALOGUE, Source
    from hashidx.data.footprints import Footprints
    from hashidx.data.images import load_image
    from hashidx.data.labels import LabelFile, read_labels
    from hashidx.data.queryfile import image_list, read_query_file
    from hashidx.data.rasters import Radiometry, fit_radiometry, read_raster
    from hashidx.data.split import Split, load_split, make_split, save_split
    from hashidx.data.stac import StacRecord, read_catalog

__all__, __getattr__, __dir__ = lazy_exports(__name__)
