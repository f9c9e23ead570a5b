"""taskiq with taskiq-redis's stream broker: one worker process, 50 tasks at once.

Its defaults are two worker processes of 100 tasks each; one process is what this comparison runs.
"""

from __future__ import annotations

from bench.peers.system import Peer, WorkerSetting

PEER = Peer(
    name="taskiq",
    pins=("taskiq==0.13.0", "taskiq-redis==1.2.4"),
    app="taskiq_app",
    packages=("taskiq", "taskiq-redis", "redis"),
    workers=(
        WorkerSetting("taskiq 1 process, 50 async tasks",
                      ("taskiq", "worker", "taskiq_app:broker", "--workers", "1", "--max-async-tasks", "50"),
                      slots=50, note="a supervisor and one worker process"),
    ),
)  # fmt: skip
