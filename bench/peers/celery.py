"""Celery with Redis as its broker: the prefork pool at two children (the machine's cores), and threads."""

from __future__ import annotations

from bench.peers.system import Peer, WorkerSetting

WORKER = ("celery", "-A", "celery_app", "worker", "--without-gossip", "--without-mingle")

PEER = Peer(
    name="celery",
    pins=("celery[redis]==5.7.0",),
    app="celery_app",
    packages=("celery", "kombu", "redis"),
    workers=(
        WorkerSetting("Celery prefork -c 2", (*WORKER, "--pool", "prefork", "-c", "2"), slots=2,
                      note="a parent and two pool processes"),
        WorkerSetting("Celery threads -c 16", (*WORKER, "--pool", "threads", "-c", "16"), slots=16),
    ),
)  # fmt: skip
