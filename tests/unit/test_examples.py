"""The example jobs as plain functions: a registered job is still callable directly."""

from __future__ import annotations

import pytest

from jobs.examples import (
    IntentionalFailureError,
    always_fails,
    count_primes,
    process_items,
    sync_account,
    very_long_task,
    word_count,
)


def test_very_long_task_sleeps_for_the_time_asked() -> None:
    assert very_long_task(0.05)["slept"] >= 0.05
    assert very_long_task(0) == {"slept": 0.0}


@pytest.mark.parametrize(("limit", "primes"), [(2, 0), (3, 1), (100, 25), (1_000_000, 78498)])
def test_count_primes(limit: int, primes: int) -> None:
    assert count_primes(limit) == {"limit": limit, "primes": primes}


def test_word_count() -> None:
    result = word_count("The cat and the hat. THE END", top=1)
    assert result == {"words": 7, "unique": 5, "top": [("the", 3)]}


def test_always_fails() -> None:
    with pytest.raises(IntentionalFailureError, match="nope"):
        always_fails("nope")


def test_process_items() -> None:
    assert process_items(3, 0) == {"processed": 3}


def test_sync_account() -> None:
    assert sync_account(7, 0) == {"account_id": 7, "seconds": 0}
    assert sync_account.unique is not None
    assert sync_account.unique.by == ("account_id",)
