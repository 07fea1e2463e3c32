"""Run every benchmark module (or the ones named on the command line).

``python -m bench NAME --option ...`` passes the options to that one module's ``main``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ON_REQUEST = frozenset({"chaos"})
"""Modules run only when named: the chaos soak takes minutes and judges rather than measures."""


def main(argv: list[str]) -> int:
    """Import each ``bench/*.py`` module and call its ``main()``; the worst exit code."""
    first_option = next((n for n, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    names, options = argv[:first_option], argv[first_option:]
    if options and len(names) != 1:
        print("usage: python -m bench [NAME ...] | python -m bench NAME --option ...")
        return 2
    names = names or sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not m.name.startswith("_") and m.name not in ON_REQUEST
    )
    status = 0
    for name in names:
        print(f"== bench.{name}")
        module = importlib.import_module(f"bench.{name}")
        result = module.main(options) if options else module.main()
        status = max(status, result if isinstance(result, int) else 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
