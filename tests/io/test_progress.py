"""Progress without a terminal: plain lines on stderr (a start, steps of a long loop, an end), nothing on --quiet."""

from __future__ import annotations

import time

from hashidx.io import progress as prog


def test_a_loop_without_a_terminal_says_where_it_is_in_lines(capsys, monkeypatch):
    monkeypatch.setattr(prog, "_quiet", False)
    monkeypatch.setattr(prog.sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setattr(prog, "LINE_SECONDS", 0.05)  # a line at least every 50 ms

    def slow():
        for i in range(4):
            time.sleep(0.06)
            yield i

    assert list(prog.progress(slow(), "features", total=4, unit="batch")) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "features: 0/4 batch" and lines[-1].startswith("features: 4/4 batch, done in ")
    assert any(line.startswith("features: 2/4 batch (50%)") for line in lines[1:-1])


def test_quiet_prints_nothing(capsys, monkeypatch):
    monkeypatch.setattr(prog, "_quiet", True)
    assert list(prog.progress(range(3), "x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
