"""STAC catalogs as archives (pystac): a Catalog, Collection, ItemCollection or Item JSON → one raster asset per
item, with the item's id, collection and time, bands named by their common names, and labels from a property."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hashidx.errors import HashidxError

if TYPE_CHECKING:
    from hashidx.data.datasets import Dataset

# Asset roles and media types that are pictures of the ground, not metadata or previews.
_SKIP_ROLES = {"thumbnail", "overview", "metadata", "snow-ice", "cloud", "data-mask", "water-mask"}
_IMAGE_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-geotiff")
_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
STAC_TYPES = ("Catalog", "Collection", "Feature", "FeatureCollection")


@dataclass(frozen=True)
class StacRecord:
    """One item's raster: its STAC id, collection and time (ISO 8601, "" where the item has none), the asset read
    and its file, the item's label (None without --label-property), and its bands' names."""

    item: str
    collection: str
    datetime: str
    asset: str
    href: Path
    label: str | None = None
    band_names: tuple[str, ...] = ()


def is_stac(path: str | Path) -> bool:
    """Whether a file is STAC JSON (it says its stac_version, or is a FeatureCollection of STAC items)."""
    path = Path(path)
    if path.suffix.lower() not in (".json", ".geojson") or not path.is_file():
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(doc, dict) or doc.get("type") not in STAC_TYPES:
        return False
    features = doc.get("features") or [{}]
    return "stac_version" in doc or (isinstance(features[0], dict) and "stac_version" in features[0])


def _items(path: Path) -> list[Any]:
    import pystac

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("type") == "FeatureCollection":
            return list(pystac.ItemCollection.from_file(str(path)))
        obj = pystac.read_file(str(path))
        if isinstance(obj, pystac.Item):
            return [obj]
        return list(obj.get_items(recursive=True))  # type: ignore[attr-defined]  # a Catalog or Collection
    except HashidxError:
        raise
    except Exception as exc:  # pystac raises many kinds for a broken catalog: each is one line here
        reason = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise HashidxError(
            f"{path}: not a readable STAC catalog ({type(exc).__name__}: {reason}); fix the JSON or its links"
        ) from None


def _band_names(asset: Any, item: Any) -> tuple[str, ...]:
    """An asset's bands by common name (else name): STAC 1.1 `bands`, or the eo extension's `eo:bands`."""
    fields = asset.extra_fields
    bands = fields.get("bands") or fields.get("eo:bands") or item.properties.get("eo:bands") or []
    return tuple(
        str(b.get("eo:common_name") or b.get("common_name") or b.get("name") or "").lower()
        for b in bands
        if isinstance(b, dict)
    )


def _is_image(key: str, asset: Any) -> bool:
    roles = set(asset.roles or [])
    if roles & _SKIP_ROLES and "data" not in roles:
        return False
    media = (asset.media_type or "").lower()
    return "data" in roles or any(media.startswith(t) for t in _IMAGE_TYPES) or key in ("visual", "image", "data")


def _names(bands: str | None) -> list[str]:
    """The band names in a --bands value (numbers and ranges left out)."""
    if not bands:
        return []
    return [p.strip().lower() for p in bands.split(",") if p.strip() and not re.fullmatch(r"\d+(-\d+)?", p.strip())]


def _choose_asset(item: Any, bands: str | None, source: Path) -> str:
    keys = list(item.assets)
    if bands and bands.strip() in item.assets:
        return bands.strip()
    images = [k for k in keys if _is_image(k, item.assets[k])]
    wanted = _names(bands)
    if wanted:
        images = [k for k in images if set(wanted) <= set(_band_names(item.assets[k], item))] or images
    if len(images) == 1:
        return images[0]
    if not images:
        raise HashidxError(
            f"{source}: STAC item {item.id!r} has no raster asset (its assets: {', '.join(keys) or 'none'}); "
            "add one, or name one with --bands ASSET_KEY"
        )
    raise HashidxError(
        f"{source}: STAC item {item.id!r} has {len(images)} raster assets ({', '.join(images)}); name one with "
        f"--bands {images[0]}, or name bands one asset holds by common name, e.g. --bands red,green,blue"
    )


def _href(item: Any, key: str, source: Path) -> Path:
    href = item.assets[key].get_absolute_href() or item.assets[key].href
    if _REMOTE.match(href) and not href.lower().startswith("file://"):
        raise HashidxError(
            f"{source}: STAC item {item.id!r} asset {key!r} is remote ({href}); hashidx reads local files: download "
            "the assets and point the catalog's hrefs at them"
        )
    path = Path(re.sub(r"^file://", "", href))
    if not path.is_file():
        raise HashidxError(
            f"{source}: STAC item {item.id!r} asset {key!r} not found at {path}; fix its href or remove the item"
        )
    return path


def _label_of(label_item: Any, name: str) -> str | None:
    """A label-extension item's class under `name`: its property `name`, or the one class its `label:classes`
    entry `name` lists (a scene-level label); None where it gives no single class."""
    value = label_item.properties.get(name)
    if value not in (None, ""):
        return str(value)
    for entry in label_item.properties.get("label:classes") or []:
        if isinstance(entry, dict) and entry.get("name") == name and len(entry.get("classes") or []) == 1:
            return str(entry["classes"][0])
    return None


def _labels_from_label_items(label_items: list[Any], name: str) -> dict[str, str]:
    """{source imagery item's self href: class} from the label extension's items and their `source` links."""
    out = {}
    for label_item in label_items:
        label = _label_of(label_item, name)
        if label is None:
            continue
        for link in label_item.links:
            if link.rel == "source":
                out[os.path.normpath(link.get_absolute_href() or link.href)] = label
    return out


def read_catalog(source: str | Path, bands: str | None = None, label_property: str | None = None) -> list[StacRecord]:
    """Every imagery item of a STAC file (a catalog is walked through its children), one raster asset each: the
    one `bands` names by asset key, else the one holding the common names `bands` lists, else the item's only
    raster asset. Each href must be a local file. `label_property` names where each item's class is: its own
    property, or that of a label-extension item whose `source` link points at it (the property, or a
    `label:classes` entry of that name with one class). Label items are not imagery and are not read as such."""
    from hashidx.data.footprints import iso_time

    source = Path(source)
    everything = _items(source)
    label_items = [i for i in everything if "label:type" in i.properties]
    items = [i for i in everything if "label:type" not in i.properties]
    if not items:
        raise HashidxError(f"{source}: the STAC catalog has no items; point at a catalog, collection or item with some")
    by_label_item = _labels_from_label_items(label_items, label_property) if label_property else {}
    records = []
    for item in items:
        key = _choose_asset(item, bands, source)
        label = None
        if label_property is not None:
            own = item.properties.get(label_property)
            label = (
                str(own) if own not in (None, "") else by_label_item.get(os.path.normpath(item.get_self_href() or ""))
            )
            if label is None:
                raise HashidxError(
                    f"{source}: STAC item {item.id!r} has no property {label_property!r} and no label item gives it "
                    f"one; give it one, or choose another --label-property (it has: "
                    f"{', '.join(sorted(item.properties)) or 'none'})"
                )
        when = item.datetime or item.common_metadata.start_datetime
        records.append(
            StacRecord(
                str(item.id),
                str(item.collection_id or ""),
                iso_time(when.isoformat()) if when is not None else "",
                key,
                _href(item, key, source),
                label,
                _band_names(item.assets[key], item),
            )
        )
    return records


def band_numbers(bands: str | None, records: Sequence[StacRecord], source: Path) -> str | None:
    """--bands with common names (red, nir) and asset keys turned into 1-based numbers of the chosen assets; the
    same numbers must hold for every item. Without names (no --bands, or an asset key), an asset whose bands
    include red, green and blue is read as those three."""
    if bands is None or (len(records) and bands.strip() == records[0].asset):
        if records and all({"red", "green", "blue"} <= set(r.band_names) for r in records):
            return band_numbers("red,green,blue", records, source)
        return None
    if not _names(bands):
        return bands
    out = None
    for r in records:
        numbers = []
        for part in (p.strip() for p in bands.split(",")):
            if re.fullmatch(r"\d+(-\d+)?", part):
                numbers.append(part)
            elif part.lower() in r.band_names:
                numbers.append(str(r.band_names.index(part.lower()) + 1))
            else:
                return bands  # not a catalog name: the file's own band names may know it (parse_bands says if not)
        text = ",".join(numbers)
        if out is not None and text != out:
            raise HashidxError(
                f"{source}: --bands {bands} are bands {out} of the first item but {text} of STAC item {r.item!r}; "
                "give band numbers, or split the catalog by band layout"
            )
        out = text
    return out


def relative_name(href: Path, root: Path) -> str:
    """How an item's file is named in outputs: relative to the catalog's folder where it can be."""
    try:
        return Path(os.path.relpath(href, root)).as_posix()
    except ValueError:  # another drive
        return href.as_posix()


def catalog_dataset(
    source: str | Path, bands: str | None = None, label_property: str | None = None, labels_required: bool = True
) -> tuple[Dataset, str | None]:
    """A STAC file as a Dataset (items named relative to its folder, labelled by `label_property`), and --bands as
    band numbers of the chosen assets."""
    import numpy as np

    from hashidx.data.datasets import Dataset, first_duplicate, unlabelled

    source = Path(source)
    if labels_required and label_property is None:
        raise HashidxError(
            f"{source}: a STAC catalog carries no classes by itself; name the item property that holds each item's "
            "class with --label-property, or code the archive without labels (--method itq)"
        )
    records = read_catalog(source, bands, label_property)
    root = source.parent.resolve()
    names = [relative_name(r.href, root) for r in records]
    dup = first_duplicate(names)
    if dup is not None:
        raise HashidxError(f"{source}: two STAC items read the same file {dup!r}; remove one of them")
    if label_property is None:
        ds = unlabelled(root, names)
    else:
        classes = tuple(sorted({str(r.label) for r in records}))
        index = {c: k for k, c in enumerate(classes)}
        ds = Dataset(root, tuple(names), np.asarray([index[str(r.label)] for r in records], np.int64), classes)
        if len(classes) < 2:
            raise HashidxError(
                f"{source}: every item's {label_property!r} is {classes[0]!r}; supervised hashing needs two classes"
            )
    catalog = {root / n: r for n, r in zip(names, records)}
    return dataclasses.replace(ds, catalog=catalog), band_numbers(bands, records, source)
