"""Raw RQ, the library offload builds on, at offload's version and with its own defaults (pickle)."""

from __future__ import annotations

from bench.peers.system import Peer, WorkerSetting

PEER = Peer(
    name="rq",
    pins=("rq==3.0.0",),
    app="rq_app",
    packages=("rq", "redis"),
    workers=(
        WorkerSetting("RQ Worker (fork per job)", ("rq", "worker", "default"), slots=1, drain_cap=500),
        WorkerSetting("RQ SimpleWorker", ("rq", "worker", "-w", "rq.SimpleWorker", "default"), slots=1),
    ),
)
