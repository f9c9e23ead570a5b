"""`python -m service.clock`: the Procfile's clock."""

from service.clock.clock import main

main()
