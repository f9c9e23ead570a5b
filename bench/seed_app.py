"""The seed's blocking endpoint, the baseline offload is measured against: the work runs in-request."""

from __future__ import annotations

from fastapi import FastAPI

from jobs.examples import very_long_task

app = FastAPI()


@app.post("/blocking/very_long_task")
def run_very_long_task(seconds: float = 5) -> dict[str, float]:
    """Hold the connection while the task runs, as the seed did."""
    return very_long_task(seconds)
