"""The soak's job lives with the benchmarks: its own catalogue has it, a deployment's does not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.soak.jobs import soak_limited, soak_step
from jobs.examples import IntentionalFailureError


def test_soak_step_returns_its_n_or_fails_when_asked() -> None:
    assert soak_step(7, ms=0) == {"n": 7}
    with pytest.raises(IntentionalFailureError, match="soak step 8"):
        soak_step(8, fail=True, ms=0)
    assert soak_step.defaults.retries == 2
    assert soak_step.defaults.retry_intervals == (0,)  # a cut-off run reruns at once, no scheduler


def test_soak_limited_is_the_step_under_a_cap_and_a_rate_per_key() -> None:
    assert soak_limited(7, key="k1", ms=0) == {"n": 7}
    assert soak_limited.flow is not None
    assert soak_limited.flow.describe_concurrency() == "2 at once per key"
    assert soak_limited.flow.describe_rate() == "20/second per key"
    assert soak_limited.defaults.retry_intervals == (0,)


@pytest.mark.parametrize(("module", "has_it"), [("jobs", False), ("bench.soak.jobs", True)])
def test_only_the_soak_catalogue_serves_soak_step(module: str, has_it: bool) -> None:
    # In a process of its own: this one has imported the soak's jobs already.
    names = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from service.catalog import load_catalog; print(load_catalog({module!r}).names())",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert ("'soak_step'" in names) is has_it
    assert "'word_count'" in names
