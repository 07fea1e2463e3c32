"""``python -m consumer`` is ``mlevents``."""

import sys

from .cli import main

sys.exit(main())
