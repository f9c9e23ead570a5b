"""P4c: what flow control costs the no-op drain of jobs that declare no limit, and of jobs that do.

Every flavour drains N no-op jobs with one fresh worker process in burst mode (as bench/drain.py
does), timing `work(burst=True)` inside the process:

- `before`: jobs without limits, the worker's take script as it was before flow control
  (`BEFORE_TAKE`: no Redis clock, no release of held jobs, no per-job HGET of the rate field),
  swapped in for this process only: the baseline;
- `plain`: the same jobs, the take script as it is;
- `rated`: jobs with a rate limit that never holds one (`1000000/second`): the window's check on
  each take;
- `capped`: jobs with a concurrency cap that never makes one wait (RQ's RateLimit): RQ's slot
  bookkeeping at the enqueue and at each end.

Flavours alternate over rounds; medians reported, ratios against `before` from the same run.

    python -m bench.flow --child FLAVOUR --kind simple|concurrent --redis URL --out FILE  (one run)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import redis

from bench import drain, noop
from bench.processes import Context
from bench.report import Better, Row, median
from service.catalog import RegisteredJob, Registry
from service.store.enqueue import enqueue
from service.store.layout import JOB_KEY_PREFIX

QUEUE = "default"
BATCH = 1000
RUN_TIMEOUT = 300.0
FLAVOURS = ("before", "plain", "rated", "capped")


def noop_rated() -> None:
    """Do nothing, under a rate limit that never holds."""


def noop_capped() -> None:
    """Do nothing, under a concurrency cap that never makes one wait."""


registry = Registry()
NOOP = registry.job(name="noop")(noop.noop)
JOBS: dict[str, RegisteredJob[..., None]] = {
    "before": NOOP,
    "plain": NOOP,
    "rated": registry.job(rate_limit="1000000/second")(noop_rated),
    "capped": registry.job(concurrency=1_000_000)(noop_capped),
}

# service/store/queues.py's take script before flow control, its reply in today's shape.
BEFORE_TAKE = """
local n = (#KEYS - 1) / 3
local paused = KEYS[#KEYS]
local want = tonumber(ARGV[n + 1])
local taken = {}
for i = 1, n do
  if redis.call('SISMEMBER', paused, ARGV[i]) == 0 then
    while #taken < want do
      local id = redis.call('LMOVE', KEYS[i], KEYS[n + i], 'LEFT', 'RIGHT')
      if not id then break end
      taken[#taken + 1] = {i, id, redis.call('HGETALL', 'JOB_KEY_PREFIX' .. id)}
    end
  end
  if #taken == want then return {taken, 0} end
end
if #taken > 0 then return {taken, 0} end
redis.call('DEL', unpack(KEYS, 2 * n + 1, 3 * n))
return {taken, 0}
""".replace("JOB_KEY_PREFIX", JOB_KEY_PREFIX)


def fill(connection: redis.Redis, flavour: str, count: int) -> None:
    """`count` no-op jobs of `flavour`, through offload's enqueue path, in batches."""
    registered = JOBS[flavour]
    for start in range(0, count, BATCH):
        enqueue(connection, registered, [registered.input_model()] * min(BATCH, count - start))


def drain_once(ctx: Context, redis_url: str, flavour: str, kind: str, count: int) -> float:
    """Jobs per second one fresh worker process drained `count` jobs of `flavour` at (bench.drain's)."""
    return drain.drain_once(ctx, redis_url, flavour, kind, count, module="bench.flow", fill_with=fill)


def p4c(ctx: Context) -> list[Row]:
    rounds = ctx.pick(3, 1)
    counts = {"simple": ctx.pick(2000, 300), "concurrent": ctx.pick(2000, 300)}
    rates = drain.drain_rounds(ctx, rounds, counts, FLAVOURS, drain_once)
    rows = []
    for kind, count in counts.items():
        worker = f'build_worker(kind="{kind}")'
        base = median(rates["before", kind])
        rows.append(
            Row("P4c", f"no-op drain, {count:,} jobs without limits, {worker}", median(rates["plain", kind]),
                base, "the same, take script before flow control", Better.HIGHER, round(1 / 1.1, 2),
                unit="jobs/s")
        )  # fmt: skip
        for flavour, what in (("rated", "a rate limit that never holds"), ("capped", "a cap never reached")):
            rows.append(
                Row("P4c ref", f"no-op drain, {count:,} jobs with {what}, {worker}",
                    median(rates[flavour, kind]), base, "no limits, take script before flow control",
                    Better.HIGHER, None, unit="jobs/s")
            )  # fmt: skip
    return rows


def child(flavour: str, kind: str, redis_url: str, out: Path) -> None:
    """One burst run in this process; writes the seconds `work(burst=True)` took to `out`."""
    from bench import flow  # not __main__'s: the jobs' stored paths name bench.flow
    from service.logs import configure_logging
    from service.store import queues
    from service.worker.main import build_worker

    if flavour == "before":
        queues._TAKE = BEFORE_TAKE  # this process only: the baseline
    connection = redis.Redis.from_url(redis_url)
    configure_logging("text", "INFO")  # as `python -m service.worker` does
    worker = build_worker(connection, kind=kind, registry=flow.registry)
    started = time.perf_counter()
    worker.work(burst=True, logging_level="INFO")
    out.write_text(json.dumps({"seconds": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", choices=FLAVOURS, required=True)
    parser.add_argument("--kind", choices=["simple", "concurrent"], required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    child(args.child, args.kind, args.redis, args.out)


if __name__ == "__main__":
    main()
