"""A job that does nothing, for measuring a worker's own cost per job (P4b).

`noop` is a plain function: raw RQ imports it by its dotted path. `registry` holds it as an offload
job too, under the same path, for offload's worker (`build_worker(registry=...)`), so both run the
same function; only offload's catalogue lookup, input check and bookkeeping come on top.
"""

from __future__ import annotations

from service.catalog import Registry


def noop() -> None:
    """Do nothing."""


registry = Registry()
NOOP = registry.job(name="noop")(noop)
