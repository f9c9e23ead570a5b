"""The serializer of every RQ object offload makes: RQ's own JSONSerializer, in a form RQ accepts fast.

RQ checks a serializer each time it builds a Job, Queue, registry or Result
(`rq.serializers.resolve_serializer`: `isinstance(serializer, Serializer)`, a runtime-checkable
Protocol). On Python 3.11 that check walks the Protocol's members every time: about 58 µs, eight
times per job a worker runs, about 15 % of a concurrent worker's CPU per no-op job (bench/PROFILES.md).
`isinstance` answers at once, before any `__instancecheck__`, for an object whose type *is* the
class asked about; so JSON is an object of type `Serializer` itself, its `dumps` and `loads` RQ's
JSONSerializer's own functions. What it writes and reads is byte for byte RQ's JSON
(tests/unit/test_serializer.py).
"""

from __future__ import annotations

from typing import Any, cast

from rq.serializers import JSONSerializer, Serializer


def _json() -> Serializer:
    # A Protocol cannot be instantiated by calling it; object.__new__ makes the plain object RQ's
    # check needs, and its own attributes shadow the Protocol's (empty) methods. RQ names a worker's
    # serializer by `__module__` and `__qualname__` (a spawned work horse imports it by that name):
    # here, this module's JSON.
    serializer: Any = object.__new__(cast(type, Serializer))
    serializer.dumps = JSONSerializer.dumps
    serializer.loads = JSONSerializer.loads
    serializer.__module__ = __name__
    serializer.__qualname__ = "JSON"
    return cast(Serializer, serializer)


JSON: Serializer = _json()
