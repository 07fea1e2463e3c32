"""``python -m consumer`` is ``mlevents``."""

import sys

from consumer.commands.main import main

sys.exit(main())
