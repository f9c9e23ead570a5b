"""SAQ with Redis: 50 jobs at once in one event loop."""

from __future__ import annotations

from bench.peers.system import Peer, WorkerSetting

PEER = Peer(
    name="saq",
    pins=("saq[redis]==0.26.4",),
    app="saq_app",
    packages=("saq", "redis"),
    workers=(WorkerSetting("SAQ concurrency 50", ("saq", "saq_app.settings"), slots=50),),
)
