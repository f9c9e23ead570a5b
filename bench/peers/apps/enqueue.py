"""`python enqueue.py APP JOB COUNT [--seconds S]`: one `tick` (the driver's start mark: the worker
has begun), then COUNT of JOB, through peer APP's own client (its module's `enqueue`).

A separate script, so the app is imported by its name: run as `__main__`, Celery and taskiq would
name its tasks after `__main__` and the worker, which imports the module, would not know them.
"""

from __future__ import annotations

import argparse
import importlib

from bench_common import JOBS

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", help="the app module, e.g. celery_app")
    parser.add_argument("job", choices=JOBS)
    parser.add_argument("count", type=int)
    parser.add_argument("--seconds", type=float, default=0.5, help="io_wait's wait")
    args = parser.parse_args()
    app = importlib.import_module(args.app)
    app.enqueue("tick", 1, 0.0)
    app.enqueue(args.job, args.count, args.seconds)
