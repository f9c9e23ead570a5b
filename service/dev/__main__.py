"""`python -m service.dev`: the whole stack locally (what `make run` calls)."""

import sys

from service.dev.run import main

sys.exit(main())
