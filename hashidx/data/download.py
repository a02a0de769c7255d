"""Public remote-sensing scene datasets: where each comes from, a resumable checked download, class folders out."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hashidx.data.datasets import IMAGE_SUFFIXES
from hashidx.errors import HashidxError
from hashidx.io.progress import progress

CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One dataset: its official page, a direct archive URL where one exists, and what the archive holds."""

    name: str
    title: str
    classes: int
    images: int
    pixels: str
    page: str
    archive: str  # file name of the archive
    url: str | None = None  # None: the publisher offers no direct download
    md5: str | None = None
    size: str = ""  # approximate, for the listing only
    note: str = ""


CATALOGUE: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "ucmerced",
            "UC Merced Land Use",
            21,
            2100,
            "256 px, 0.3 m, RGB",
            "http://weegee.vision.ucmerced.edu/datasets/landuse.html",
            "UCMerced_LandUse.zip",
            url="http://weegee.vision.ucmerced.edu/datasets/UCMerced_LandUse.zip",
            md5="5b7ec56793786b6dc8a908e8854ac0e4",
            size="~317 MB",
        ),
        Source(
            "eurosat",
            "EuroSAT (RGB)",
            10,
            27000,
            "64 px, 10 m, Sentinel-2 RGB",
            "https://github.com/phelber/EuroSAT",
            "EuroSAT.zip",
            url="https://madm.dfki.de/files/sentinel/EuroSAT.zip",
            md5="c8fa014336c82ac7804f0398fcb19387",
            size="~90 MB",
        ),
        Source(
            "patternnet",
            "PatternNet",
            38,
            30400,
            "256 px, 0.06-4.7 m, RGB",
            "https://sites.google.com/view/zhouwx/dataset",
            "PatternNet.zip",
            md5="96d54b3224c5350a98d55d5a7e6984ad",
            size="~1.4 GB",
            note="hosted on Google Drive, which needs a browser confirmation",
        ),
        Source(
            "aid",
            "AID",
            30,
            10000,
            "600 px, 0.5-8 m, RGB",
            "https://captain-whu.github.io/AID/",
            "AID.zip",
            size="~2.5 GB",
            note="OneDrive / Baidu Pan links on the page",
        ),
        Source(
            "nwpu-resisc45",
            "NWPU-RESISC45",
            45,
            31500,
            "256 px, 0.2-30 m, RGB",
            "https://gcheng-nwpu.github.io/#Datasets",
            "NWPU-RESISC45.rar",
            size="~400 MB",
            note="OneDrive / Baidu Pan links on the page; a .rar: unpack it and use its class folders as they are",
        ),
        Source(
            "whu-rs19",
            "WHU-RS19",
            19,
            1005,
            "600 px, up to 0.5 m, RGB",
            "http://www.xinhua-fluid.com/people/yangwen/WHU-RS19.html",
            "WHU-RS19.zip",
            size="~100 MB",
            note="download link on the page",
        ),
    )
}


def source(name: str) -> Source:
    try:
        return CATALOGUE[name.lower()]
    except KeyError:
        raise HashidxError(f"unknown dataset {name!r}; 'hashidx datasets list' shows: {', '.join(CATALOGUE)}") from None


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Download `url` to `target`, continuing TARGET.part from where an earlier attempt stopped."""
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the range starts at the end: an earlier run got every byte
            os.replace(part, target)
            return target
        raise HashidxError(
            f"{url}: HTTP {exc.code} {exc.reason}; check the address or download it by hand and pass --archive"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HashidxError(
            f"{url}: cannot connect ({reason}); check the network, or download the archive by hand and pass --archive"
        ) from None
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        try:
            with open(part, "ab" if resumed else "wb") as fh:
                for block in progress(
                    iter(lambda: response.read(CHUNK), b""),
                    f"download {target.name}",
                    total=None if total is None else -(-total // CHUNK),
                    unit="MB",
                    initial=have // CHUNK,
                ):
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
        except (OSError, http.client.HTTPException) as exc:  # a dropped connection: keep what arrived
            raise HashidxError(
                f"{url}: download interrupted after {part.stat().st_size} bytes ({exc}); "
                "rerun the same command to continue"
            ) from None
    got = part.stat().st_size
    if total is not None and got < total:
        raise HashidxError(f"{url}: download stopped at {got} of {total} bytes; rerun the same command to continue")
    os.replace(part, target)
    return target


def _safe_members(names: list[str], where: Path) -> None:
    for n in names:
        resolved = (where / n).resolve()
        if not resolved.is_relative_to(where.resolve()):
            raise HashidxError(f"archive member {n!r} would be written outside {where}; refusing the archive")


def extract(archive: Path, where: Path) -> None:
    """Unpack a zip or tar archive into `where`, refusing members that point outside it."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _safe_members(zf.namelist(), where)
            zf.extractall(where)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            _safe_members(tf.getnames(), where)
            tf.extractall(where, filter="data")
    else:
        raise HashidxError(
            f"{archive}: neither a zip nor a tar archive; unpack it yourself and point hashidx at "
            "the folder of class folders"
        )


def class_folder_root(top: Path) -> Path:
    """The folder whose subfolders hold the images: the shallowest one with at least two image-holding subfolders."""
    queue = [top]
    while queue:
        here = queue.pop(0)
        subdirs = sorted(d for d in here.iterdir() if d.is_dir() and not d.name.startswith((".", "__MACOSX")))
        with_images = [d for d in subdirs if any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir())]
        if len(with_images) >= 2:
            return here
        queue.extend(subdirs)
    raise HashidxError(f"no class folders of images found in the unpacked archive under {top}")


def download(
    name: str | Source,
    root: str | Path,
    url: str | None = None,
    archive: str | Path | None = None,
    keep_archive: bool = False,
) -> Path:
    """ROOT/NAME as class folders, from the catalogue's URL, a mirror `url`, or a local `archive`.

    The archive is checked against the catalogue's MD5 where it has one. Nothing appears at ROOT/NAME
    until the whole dataset is unpacked there; an interrupted download continues on the next call.
    """
    src = name if isinstance(name, Source) else source(name)
    root = Path(root)
    final = root / src.name
    if final.is_dir() and any(final.iterdir()):
        return final
    root.mkdir(parents=True, exist_ok=True)
    if archive is not None:
        file = Path(archive)
        if not file.is_file():
            raise HashidxError(f"{file}: archive not found")
    else:
        address = url or src.url
        if address is None:
            raise HashidxError(
                f"{src.name}: no direct download ({src.note}); get {src.archive} from {src.page}, "
                f"then: hashidx datasets download {src.name} --root {root} --archive FILE"
            )
        file = fetch(address, root / src.archive)
    if src.md5 is not None:
        got = md5_file(file)
        if got != src.md5:
            if archive is None:
                file.unlink()  # a wrong file never becomes right: the next attempt starts clean
            raise HashidxError(
                f"{file}: MD5 {got} but {src.name} is {src.md5}; "
                + (
                    "the download was removed, rerun to fetch it again"
                    if archive is None
                    else "this is not the published archive"
                )
            )
    work = root / f".{src.name}.unpacking"
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir()
        extract(file, work)
        os.replace(class_folder_root(work), final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if archive is None and not keep_archive:
        file.unlink()
    return final
