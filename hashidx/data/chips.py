"""Scenes cut into chips: pixel windows named `scene.tif#COL,ROW,WIDTH,HEIGHT`, read on demand, never written out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashidx.data.rasters import Window, open_raster, read_mask
from hashidx.errors import HashidxError

# A chip with less than half of its pixels valid (no-data, alpha, mask) is mostly border: skipped and counted.
MIN_VALID = 0.5
MASK_SAMPLES = 32  # mask pixels per chip side used to measure its valid share (the mask is read decimated)


@dataclass(frozen=True)
class Tiling:
    """`--tile SIZE[:STRIDE]`: square chips of `size` pixels every `stride` pixels (default: no overlap)."""

    size: int
    stride: int = 0  # 0: the chip size
    min_valid: float = MIN_VALID

    @classmethod
    def parse(cls, text: str, min_valid: float = MIN_VALID) -> Tiling:
        try:
            parts = [int(x) for x in text.split(":")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2) or min(parts) < 1:
            raise HashidxError(f"--tile {text}: give SIZE or SIZE:STRIDE in pixels, e.g. --tile 256 or --tile 256:128")
        if not 0.0 <= min_valid <= 1.0:
            raise HashidxError(f"--min-valid {min_valid}: give a share of valid pixels between 0 and 1")
        return cls(parts[0], parts[-1], min_valid)

    def __post_init__(self) -> None:
        if self.stride == 0:
            object.__setattr__(self, "stride", self.size)


@dataclass
class Tiled:
    """Chips as (name, path) items, and per scene how many chips were skipped as mostly invalid."""

    items: list[tuple[str, Path]]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def offsets(extent: int, size: int, stride: int) -> list[int]:
    """Window starts along one axis: every `stride`, plus one flush with the far edge so the scene is covered."""
    starts = list(range(0, extent - size + 1, stride))
    if starts[-1] + size < extent:
        starts.append(extent - size)
    return starts


def scene_windows(path: Path, tiling: Tiling) -> tuple[list[Window], int]:
    """A scene's chips with enough valid pixels, and how many were skipped; the mask is read decimated, so a
    scene of any size costs a few MB here."""
    with open_raster(path) as src:
        w, h = src.width, src.height
        if tiling.size > min(w, h):
            raise HashidxError(
                f"{path}: chip size {tiling.size} px is larger than the {w}x{h} px scene; use a smaller --tile"
            )
        f = max(1, tiling.size // MASK_SAMPLES)
        mask = read_mask(src, path, (-(-h // f), -(-w // f)))
    # Valid share of any window from a summed-area table of the decimated mask.
    sat = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int64)
    sat[1:, 1:] = mask.cumsum(0).cumsum(1)
    kept, skipped = [], 0
    for row in offsets(h, tiling.size, tiling.stride):
        for col in offsets(w, tiling.size, tiling.stride):
            r0, c0 = row // f, col // f
            r1, c1 = max(r0 + 1, -(-(row + tiling.size) // f)), max(c0 + 1, -(-(col + tiling.size) // f))
            total = sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
            if total / ((r1 - r0) * (c1 - c0)) >= tiling.min_valid and total > 0:
                kept.append(Window(col, row, tiling.size, tiling.size))
            else:
                skipped += 1
    return kept, skipped


def tile_items(items: Sequence[tuple[str, Path]], tiling: Tiling) -> Tiled:
    """Every scene's chips, in scene order then row-major; a scene left with no valid chip is refused."""
    out = Tiled([])
    for name, path in items:
        windows, skipped = scene_windows(path, tiling)
        if not windows:
            raise HashidxError(
                f"{path}: no {tiling.size} px chip has {tiling.min_valid:.0%} valid pixels (the scene is no-data); "
                "check its no-data value or mask, lower --min-valid, or remove it"
            )
        out.items += [(name + w.suffix(), Path(str(path) + w.suffix())) for w in windows]
        out.skipped[name] = skipped
    return out
