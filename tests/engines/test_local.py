"""The local engine and the engine chooser: order kept, loads run ahead on threads, misplaced options refused."""

from __future__ import annotations

import threading

import pytest

from hashidx.engines.choose import open_engine
from hashidx.engines.local import LocalEngine, prefetch
from hashidx.errors import HashidxError


class _Doubler:
    """A stage and its worker at once: `load` records the thread it ran on, `run` doubles."""

    def __init__(self) -> None:
        self.threads: set[str] = set()

    def build(self, threads=None, device="cpu"):
        return self

    def load(self, chunk: int) -> int:
        self.threads.add(threading.current_thread().name)
        return chunk

    def run(self, chunk: int) -> int:
        return 2 * chunk


@pytest.mark.parametrize("ahead", [0, 1, 3])
def test_results_come_back_in_input_order(ahead):
    stage = _Doubler()
    assert list(LocalEngine(ahead).map(stage, range(50))) == [2 * i for i in range(50)]
    assert all(name.startswith("hashidx-load") for name in stage.threads) == (ahead > 0)


def test_scatter_gives_every_stage_each_chunk():
    assert list(LocalEngine().scatter([_Doubler(), _Doubler()], [1, 2])) == [[2, 2], [4, 4]]


def test_prefetch_reads_at_most_workers_plus_one_ahead():
    pulled: list[int] = []

    def items():
        for i in range(20):
            pulled.append(i)
            yield i

    stream = prefetch(lambda x: x, items(), workers=2)
    assert next(stream) == 0 and len(pulled) == 3


def test_ray_options_need_the_ray_engine():
    with pytest.raises(HashidxError, match="--workers: only with --engine ray"):
        open_engine("local", workers=2)
    with pytest.raises(HashidxError, match="choose local or ray"):
        open_engine("spark")
