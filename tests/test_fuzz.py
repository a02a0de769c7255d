"""A bounded run of the file fuzzer (benchmarks/fuzz.py) on a real slice run: every damaged file gets a one-line
error or is read as intact, never a crash, a traceback or a hang. The long runs are in docs/errors.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_damaged_files_get_one_line_errors(ucmd_features, tmp_path):
    out = tmp_path / "fuzz"
    result = subprocess.run(
        [sys.executable, ROOT / "benchmarks" / "fuzz.py", "--features", ucmd_features, "--cases", "20", "-o", out],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    report = json.loads((out / "fuzz.json").read_text())
    assert result.returncode == 0, result.stdout[-3000:]
    assert report["cases"] == 20 and report["commands"] >= 40
    assert report["verdicts"].get("fail", 0) == 0
    assert report["verdicts"].get("clean", 0) > 0  # the damage was seen, not just shrugged off
