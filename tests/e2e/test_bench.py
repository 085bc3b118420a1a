"""`bench/local_scale.py --quick` runs end to end against the real command and fills its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.local_scale import ROWS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def table_rows(output: str) -> dict[str, list[str]]:
    """The Markdown table's rows: first cell -> the other cells."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("| measure |"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_the_quick_bench_runs_and_prints_every_row():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "local_scale.py"), "--quick", "--stores", "default"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    rows = table_rows(result.stdout)
    assert list(rows) == list(ROWS), result.stdout
    cells = {row: values[0] for row, values in rows.items()}
    assert all(len(values) == 1 for values in rows.values())
    assert not [cell for cell in cells.values() if cell.startswith("error")], result.stdout
    assert cells["due executors ran (5-10 s ahead)"] == "5/5", result.stdout
    assert cells["restart: plans kept"].startswith("kept: "), result.stdout
    assert "200 executors pending" in cells["create a plan (median / max)"], result.stdout
