"""`build-index --type auto`: the index type and its parameters for n codes, read off a measured table.

The table comes from benchmarks/scale_codes.py (docs/scale-codes/scale_codes.json): 64-bit codes with the
structure of a real AHCL run's, held-back real queries, k=20, recall against the exact order under ties. Each
row is the cheapest setting that kept recall@20 ≥ .99 at its n; a code count between rows takes the next
measured row's setting, and one past the last row takes the last row's and says that it was not measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hashidx.errors import HashidxError


@dataclass(frozen=True)
class Measured:
    """A setting and what it gave at `measured_at` codes."""

    up_to: int  # the largest n this row is chosen for
    index_type: str
    nlist: int | None
    nprobe: int | None
    measured_at: int
    recall: float  # share of the exact top-20's distance multiset returned
    shell: float  # share of the items within the exact 20th distance the index reaches
    ms_per_query: float  # in batches of 1,000 queries, 2 cores


# Flat is exact and under ~1 ms a query to 10⁶ codes; past that, IVF with 1,024 lists and 16 probed kept
# recall@20 at 1.000 (10⁷, 10⁸) while flat's scan grew to 9 and 86 ms a query.
TABLE = (
    Measured(1_000_000, "flat", None, None, 1_000_000, 1.0, 1.0, 0.95),
    Measured(10_000_000, "ivf", 1024, 16, 10_000_000, 1.0, 0.9994, 0.23),
    Measured(100_000_000, "ivf", 1024, 16, 100_000_000, 1.0, 0.9994, 3.27),
)
SOURCE = "benchmarks/scale_codes.py (64-bit codes, k=20, 2-core Intel Xeon VM)"


def choose(n: int) -> dict:
    """What `--type auto` builds for n codes, with the measurement it rests on (recorded in the sidecar)."""
    if n < 1:
        raise HashidxError("no codes to index; the codes file is empty")
    row = next((r for r in TABLE if n <= r.up_to), TABLE[-1])
    return {
        **asdict(row),
        "measured_by": SOURCE,
        "extrapolated": n > TABLE[-1].up_to,
    }
