"""Your jobs: every function decorated with `@job` in the modules imported here can be enqueued over HTTP.

offload imports this package (the JOBS_MODULE setting names it) to build its catalogue. Add a module of
your own and import it here; importing must connect to nothing.
"""

from jobs import examples  # noqa: F401  (imported for its registrations)
