"""The benchmark suite still runs: `python -m bench.run --quick` on two benchmarks, figures in its table.

Checks that each benchmark produces its rows, never what the figures are (they depend on the
machine). Needs Debian's wrk (scripts/install-system-packages): skips without it, except with
OFFLOAD_REQUIRE_BROWSER=1 (CI, which installs the system packages), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from service.dev.harness import ROOT, child_env

pytestmark = pytest.mark.integration

REQUIRE = "OFFLOAD_REQUIRE_BROWSER"


@pytest.fixture(autouse=True)
def _wrk() -> None:
    if shutil.which("wrk") is None:
        message = "wrk is not installed: run scripts/install-system-packages"
        if os.environ.get(REQUIRE):
            pytest.fail(f"{message} ({REQUIRE} is set)")
        pytest.skip(message)


def test_quick_run_prints_a_row_per_target() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--no-save", "p1", "p2"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    table = done.stdout.split("\n\n| target |", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| P")]
    assert [row.split("|")[1].strip() for row in rows] == ["P1", "P1", "P2"], done.stdout
    assert all(row.rstrip(" |").endswith(("pass", "**FAIL**")) for row in rows), done.stdout
