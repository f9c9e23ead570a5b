"""Print the app's OpenAPI schema (what GET /openapi.json serves) without starting it or Redis.

`python -m service.dev.openapi [FILE]`: the source of the Python client's generated module
(`make client`) and of the TypeScript types (`make typescript`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from service.settings import Settings
from service.web.app import create_app

# The schema does not depend on Redis; building the app connects to nothing.
PLACEHOLDER_REDIS = "redis://127.0.0.1:6379/0"


def openapi() -> dict[str, Any]:
    """The schema of the app built from this environment's settings, its catalogue included."""
    return create_app(Settings(redis_url=PLACEHOLDER_REDIS)).openapi()


def main(argv: list[str]) -> int:
    text = json.dumps(openapi(), indent=2) + "\n"
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
