"""offload's job catalogue: every function registered here can be enqueued over HTTP.

Importing this package registers the jobs of the modules below and connects to nothing.
Add a module of your own and import it here.
"""

from jobs import examples  # noqa: F401  (imported for its registrations)
from jobs.enqueueing import EnqueueOptions
from jobs.registry import JobDefaults, RegisteredJob, job, registry, report_progress

__all__ = ["EnqueueOptions", "JobDefaults", "RegisteredJob", "job", "registry", "report_progress"]
