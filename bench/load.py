"""The load generator: Debian's `wrk`, driven with a Lua script that reports its figures as JSON.

wrk is a closed loop: each connection sends its next request when the last answer arrives, so at
a fixed number of connections latency and throughput are two views of one figure. Compare the
same connection count against the same server settings, never figures across machines.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Lua's long brackets need no escaping inside; the level only has to be absent from the body.
SCRIPT = """
wrk.method = "{method}"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{pace}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK-RESULT {{\\"requests\\": %d, \\"duration_us\\": %d, \\"socket_errors\\": %d, "
    .. "\\"bad_status\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, \\"mean_us\\": %f}}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


class LoadError(RuntimeError):
    """wrk is missing, failed, or saw errors: the figures would not mean what they say."""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadError("wrk is not installed: run scripts/install-system-packages (Debian's wrk)")
    return found


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    method: str = "GET",
    body: str = "",
    timeout: float = 30.0,
    pace_ms: float | None = None,
) -> Load:
    """Load `url` for `seconds` from `connections` keep-alive connections; every answer must be 2xx/3xx.

    `pace_ms`: each connection waits about this long (drawn uniformly from 0 to twice it) after an
    answer before its next request (wrk's `delay`), so the offered rate is about connections /
    pace: a load short of saturation, where latency is the server's own and not the queue a closed
    loop builds in front of it.
    """
    if "]==]" in body:
        raise ValueError("the body holds the Lua bracket this script quotes it with")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        # Uniform between 0 and twice the pace: the connections drift apart instead of sending in
        # step, as independent clients would (a fixed delay keeps all 64 in bursts of 64).
        pace = (
            f"delay = function() return math.random(0, {2 * pace_ms:g}) end\n" if pace_ms is not None else ""
        )
        script.write(SCRIPT.format(method=method, body=body, pace=pace))
    try:
        command = [
            require_wrk(),
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={timeout:g}s",
            "-s", script.name,
            url,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout + 30)
    finally:
        Path(script.name).unlink()
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK-RESULT ")]
    if done.returncode != 0 or not lines:
        raise LoadError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    figures = json.loads(lines[-1].removeprefix("WRK-RESULT "))
    if figures["socket_errors"] or figures["bad_status"]:
        raise LoadError(f"wrk saw errors against {method} {url}: {figures}\n{done.stdout}")
    if not figures["requests"]:
        raise LoadError(f"no request to {method} {url} completed within {seconds} s")
    return Load(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        mean_ms=figures["mean_us"] / 1000,
    )
