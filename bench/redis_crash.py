"""The loss window of an unclean Redis crash with offload's persistence (append-only, fsync 1/s).

    python -m bench.redis_crash [--rounds 5]

Each round: a real redis-server configured as `make run` configures it (service/embedded_redis.py),
jobs enqueued one by one through offload's enqueue path as fast as one client can, Redis SIGKILLed
mid-stream (no chance to flush), restarted on the same files; then every acknowledged job is
looked up. Prints, per round, how many acknowledged jobs were lost and how long before the kill the
oldest lost one was acknowledged: the window a crash can lose. A killed process loses nothing
Redis has written (the kernel still holds it); what fsync once a second risks is a crash of the
machine itself, up to about a second of writes, which this cannot simulate.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import redis

from service.catalog import load_catalog
from service.dev.redis_server import RedisServer
from service.store.enqueue import enqueue

KILL_AFTER = 2.5


def one_round(folder: Path) -> tuple[int, int, float]:
    """(acknowledged, lost, seconds from the oldest lost acknowledgement to the kill)."""
    server = RedisServer(folder).start()
    connection = redis.Redis.from_url(server.url)
    word_count = load_catalog().get("word_count")
    assert word_count is not None
    assert server.process is not None
    acknowledged: list[tuple[float, str]] = []
    killed_at = 0.0

    def kill() -> None:
        nonlocal killed_at
        time.sleep(KILL_AFTER)
        killed_at = time.monotonic()
        server.process.kill()  # type: ignore[union-attr]

    killer = threading.Thread(target=kill)
    killer.start()
    params = word_count.input_model(text="crash")
    try:
        while True:
            job = enqueue(connection, word_count, [params]).jobs[0]
            acknowledged.append((time.monotonic(), job.id))
    except redis.ConnectionError:
        pass
    killer.join()
    server.process.wait()
    connection.close()
    restarted = RedisServer(folder, port=server.port).start()
    check = redis.Redis.from_url(restarted.url)
    with check.pipeline(transaction=False) as pipe:
        for _, job_id in acknowledged:
            pipe.exists(f"rq:job:{job_id}")
        present = pipe.execute()
    check.close()
    restarted.stop()
    lost = [at for (at, _), here in zip(acknowledged, present, strict=True) if not here]
    window = killed_at - min(lost) if lost else 0.0
    return len(acknowledged), len(lost), window


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'round':>5} {'acknowledged':>13} {'lost':>6} {'window ms':>10}")
    windows = []
    for number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as scratch:
            acked, lost, window = one_round(Path(scratch))
        windows.append(window)
        print(f"{number:>5} {acked:>13} {lost:>6} {window * 1000:>10.0f}")
    print(f"largest window: {max(windows) * 1000:.0f} ms (appendfsync everysec)")


if __name__ == "__main__":
    main()
