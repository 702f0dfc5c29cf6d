"""The one entry path of lmdesk: ``python -m lmdesk``, the ``lmdesk`` script
and the frozen build all start here."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
