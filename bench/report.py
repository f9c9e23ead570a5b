"""The suite's results: one row per target, the machine they ran on, and the table that shows both."""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from service.dev.redis_server import find_redis_server


class Better(Enum):
    """Which way a figure improves: the target bounds the ratio (or the figure) from that side."""

    LOWER = "≤"
    HIGHER = "≥"


@dataclass(frozen=True)
class Row:
    """One target: offload's figure (`value`) next to the baseline measured in the same run.

    `bound` applies to value/baseline or, when `absolute` (a target the issue states in
    milliseconds), to the value itself; the ratio is then shown for context only. A row with no
    bound is a reference (e.g. the BackgroundTasks app under the same load).
    """

    target: str  # "P1", "P3a", ...
    measure: str  # what the figure is, with its unit
    value: float
    baseline: float
    baseline_is: str  # what the baseline is
    better: Better
    bound: float | None  # None: shown for reference, no target
    absolute: bool = False
    unit: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def passed(self) -> bool | None:
        if self.bound is None:
            return None
        figure = self.value if self.absolute else self.ratio
        return figure <= self.bound if self.better is Better.LOWER else figure >= self.bound

    @property
    def target_text(self) -> str:
        if self.bound is None:
            return "reference"
        what = f"{self.bound:g} {self.unit}".strip() if self.absolute else f"{self.bound:g}x"
        return f"{'value' if self.absolute else 'ratio'} {self.better.value} {what}"


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def figure(value: float, unit: str) -> str:
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def machine() -> str:
    """Cores, CPU model, memory, Python and redis-server versions: what the figures depend on."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    redis_version = subprocess.run(
        [find_redis_server(), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.search(r"v=(\S+)", redis_version)
    wrk = shutil.which("wrk") or "not installed"
    # Other work on the machine shares its cores with the benchmark: say how busy it was.
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; redis-server {found.group(1) if found else '?'}; "
        f"wrk: {wrk}; load average before the run: {load}"
    )


def table(rows: Sequence[Row]) -> str:
    """A Markdown table: readable in a terminal, and pasted as is into a README."""
    lines = [
        "| target | measure | value | baseline (same run) | ratio | target | result |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for row in rows:
        result = {True: "pass", False: "**FAIL**", None: "—"}[row.passed]
        lines.append(
            f"| {row.target} | {row.measure} | {figure(row.value, row.unit)} "
            f"| {figure(row.baseline, row.unit)} ({row.baseline_is}) | {row.ratio:.2f} "
            f"| {row.target_text} | {result} |"
        )
    return "\n".join(lines)
