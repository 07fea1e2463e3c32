"""Reading rule files from disk into a validated rule table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rules import LoadedTable, Problem, RuleSource, RuleTableError, load_table


def load_rule_files(paths: Sequence[str | Path]) -> LoadedTable:
    """Read every file and load them as one table, in order.

    Raises:
        RuleTableError: with every problem in every file, unreadable files included.
    """
    sources, problems = [], []
    for path in paths:
        try:
            sources.append(RuleSource(str(path), Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 ({exc.reason})"
            problems.append(Problem(f"cannot read: {reason or exc}", file=str(path)))
    try:
        loaded = load_table(sources)
    except RuleTableError as exc:
        raise RuleTableError(problems + exc.problems) from None
    if problems:
        raise RuleTableError(problems)
    return loaded
