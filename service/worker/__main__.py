"""`python -m service.worker`: the Procfile's worker."""

from service.worker.main import main

main()
