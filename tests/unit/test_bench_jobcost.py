"""bench/jobcost.py: its /proc readers count what they say, and it refuses a window that counts nothing.

No worker is started: `python -m bench.jobcost` does that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from bench.jobcost import context_switches, cpu_seconds, main

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the counts come from /proc")


def test_cpu_time_counts_this_process_threads() -> None:
    before = cpu_seconds(os.getpid())
    ends = time.thread_time() + 0.2

    def burn() -> None:
        while time.thread_time() < ends:
            pass

    spinner = threading.Thread(target=burn)
    spinner.start()
    spinner.join(timeout=10)
    assert cpu_seconds(os.getpid()) - before >= 0.15  # a thread's time counts toward its process


def test_context_switches_count_every_thread() -> None:
    before = context_switches(os.getpid())
    napped, release = threading.Event(), threading.Event()

    def nap_then_wait() -> None:
        for _ in range(20):
            time.sleep(0.001)  # each sleep is a switch away from this thread
        napped.set()
        release.wait(10)

    napper = threading.Thread(target=nap_then_wait)
    napper.start()
    try:
        # Counted while the thread lives (one that has ended is gone from /proc); this thread
        # switches once or twice waiting, the other at least 20 times.
        assert napped.wait(10)
        assert context_switches(os.getpid()) - before >= 20
    finally:
        release.set()
        napper.join(timeout=10)


def test_a_process_gone_counts_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    assert cpu_seconds(gone.pid) == 0.0
    assert context_switches(gone.pid) == 0


@pytest.mark.parametrize("skip", ["0", "100"])
def test_a_window_of_no_jobs_is_refused(skip: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--jobs", "100", "--skip", skip])
    assert exited.value.code == 2
    assert "--skip must be between 0 and --jobs" in capsys.readouterr().err
