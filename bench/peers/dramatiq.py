"""Dramatiq with its Redis broker: one worker process of 16 threads."""

from __future__ import annotations

from bench.peers.system import Peer, WorkerSetting

PEER = Peer(
    name="dramatiq",
    pins=("dramatiq[redis]==2.2.1",),
    app="dramatiq_app",
    packages=("dramatiq", "redis"),
    workers=(
        WorkerSetting("Dramatiq 1 process, 16 threads",
                      ("dramatiq", "dramatiq_app", "--processes", "1", "--threads", "16"), slots=16,
                      note="a supervisor and one worker process"),
    ),
)  # fmt: skip
