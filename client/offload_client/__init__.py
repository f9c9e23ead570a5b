"""A typed client for offload's HTTP API, blocking (`Client`) or asyncio (`AsyncClient`), on httpx.

```python
from offload_client import Client

with Client("https://offload.example.com", api_key="...") as client:
    job = client.jobs.word_count(text="to be or not to be")
    print(client.wait(job, timeout=60).result)
```
"""

from offload_client.async_client import AsyncClient
from offload_client.calls import TERMINAL, JobRef
from offload_client.client import Client
from offload_client.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    OffloadError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnavailableError,
    UnreachableError,
    ValidationError,
)
from offload_client.events import JobEvent
from offload_client.generated import (
    BatchOptions,
    CatalogEntry,
    EnqueueOptions,
    Health,
    JobPage,
    Jobs,
    JobView,
    QueueView,
    WorkerView,
)
from offload_client.retry import Retry
from offload_client.webhooks import verify_webhook

__all__ = [
    "TERMINAL",
    "AsyncClient",
    "BatchOptions",
    "CatalogEntry",
    "Client",
    "ConflictError",
    "EnqueueOptions",
    "ForbiddenError",
    "Health",
    "JobEvent",
    "JobPage",
    "JobRef",
    "JobView",
    "Jobs",
    "NotFoundError",
    "OffloadError",
    "PayloadTooLargeError",
    "QueueView",
    "Retry",
    "UnauthorizedError",
    "UnavailableError",
    "UnreachableError",
    "ValidationError",
    "WorkerView",
    "verify_webhook",
]
