"""P3b's baseline: a plain FastAPI app that runs its CPU-heavy work with FastAPI's `BackgroundTasks`.

What offload replaces: the request answers at once, but the work then runs in the web process's
own thread pool, sharing its interpreter (and GIL) with every request that follows.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException

from jobs.examples import count_primes

app = FastAPI()
results: dict[str, dict[str, Any]] = {}
running = 0
lock = threading.Lock()
stopping = threading.Event()


def run_count_primes(job_id: str, limit: int, repeat: int) -> None:
    """Count primes `repeat` times in a row (one worker's queue of jobs), unless told to stop."""
    global running
    with lock:
        running += 1
    try:
        for _ in range(repeat):
            if stopping.is_set():
                break
            results[job_id] = {"id": job_id, "status": "finished", "result": count_primes(limit)}
    finally:
        with lock:
            running -= 1


@app.get("/healthz")
async def read_liveness() -> dict[str, str]:
    """Liveness, as offload's: answers without touching anything."""
    return {"status": "ok"}


@app.post("/jobs/count_primes", status_code=202)
def enqueue_count_primes(
    background: BackgroundTasks, limit: int = 1_000_000, repeat: int = 1
) -> dict[str, str]:
    """Answer at once; count primes after the answer, in this process's thread pool."""
    stopping.clear()
    job_id = str(uuid.uuid4())
    results[job_id] = {"id": job_id, "status": "queued", "result": None}
    background.add_task(run_count_primes, job_id, limit, repeat)
    return {"id": job_id}


@app.get("/jobs/{job_id}")
async def read_job(job_id: str) -> dict[str, Any]:
    """The job's state, from this process's memory."""
    if job_id not in results:
        raise HTTPException(404, f"no job {job_id}")
    return results[job_id]


@app.get("/busy")
async def read_busy() -> dict[str, int]:
    """How many background tasks are counting primes now."""
    return {"running": running}


@app.post("/stop")
async def stop() -> dict[str, int]:
    """Have the running tasks stop after their current count."""
    stopping.set()
    return {"running": running}
