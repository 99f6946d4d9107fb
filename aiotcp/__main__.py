"""``python -m aiotcp``: the same as the ``aiotcp`` command."""

import sys

from .cli import main

sys.exit(main())
