"""arq: 50 jobs at once in one event loop.

arq polls its queue every `poll_delay` and starts at most `max_jobs` a poll: at its default 0.5 s
one process drains about 100 no-op jobs a second, so the drain rows poll every 10 ms (its best
setting for one process); the default is measured in the pickup scenario, where it shows.
"""

from __future__ import annotations

from bench.peers.system import Peer, WorkerSetting

WORKER = ("arq", "arq_app.WorkerSettings")

PEER = Peer(
    name="arq",
    pins=("arq==0.28.0",),
    app="arq_app",
    packages=("arq", "redis"),
    workers=(
        WorkerSetting("arq max_jobs 50, poll_delay 10 ms", WORKER, slots=50,
                      env=(("ARQ_POLL_DELAY", "0.01"),)),
        WorkerSetting("arq max_jobs 50, poll_delay 0.5 s (default)", WORKER, slots=50,
                      env=(("ARQ_POLL_DELAY", "0.5"),), scenarios=("pickup",), pickup_cap=20),
    ),
)  # fmt: skip
