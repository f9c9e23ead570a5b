"""Accounting under load: jobs through two workers killed at random, and nothing lost.

    python -m bench.soak [--jobs 2000] [--fail-fraction 0.1] [--cancel-fraction 0.01] [--seed 1]

(tests/integration/test_soak.py runs it with `OFFLOAD_SOAK_JOBS` jobs, 2,000 by default.)

Starts a real redis-server, the Procfile's `web` and two `worker`s on loopback (`--kind`: fork,
concurrent, or pool: `--processes 2` of simple children). Enqueues `--jobs` `soak_step` jobs over
HTTP in batches (`POST /jobs/soak_step/batch`, one `Idempotency-Key` per batch, the POST retried on
a connection error), spread over the three queues, a fraction asked to fail (after their two
retries) and a few cancelled while queued; every fourth batch is of `soak_limited`, the same step
under a concurrency cap and a rate limit per key, so jobs wait `rate_limited` or held while workers
die around them. While they run it SIGKILLs, every few seconds, a worker (its process group; the
kernel then kills its work horse, or a pool's children) or only a work horse; concurrent workers
get SIGTERM instead of horse kills, pools SIGTERM and SIGKILL to one child. A killed worker is
replaced at once (a pool replaces its own child). A killed horse's or child's job is failed (or
recovered) at once, and retried; a killed worker's job stays `started` until its heartbeat lapses
and a worker's maintenance finds it abandoned, then is retried, or failed when it has no retries
left.

Then it waits (bounded) until every accepted job has ended, and accounts from Redis and the API
(bench/soak/accounting.py). Exit status 1 when an invariant fails.
"""

from bench.soak.run import SoakConfig, SoakReport, run

__all__ = ["SoakConfig", "SoakReport", "run"]
