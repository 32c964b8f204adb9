"""``python -m intent_stream`` is the ``intent-stream`` command."""

from __future__ import annotations

import sys

from intent_stream.cli import main

if __name__ == "__main__":
    sys.exit(main())
