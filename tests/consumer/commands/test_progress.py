"""The progress line: drawn on a terminal only, after two seconds, at most once a second."""

from __future__ import annotations

import io

import pytest

from consumer.commands.progress import Progress
from tests.support.terminal import Terminal


def test_progress_line_after_two_seconds_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing for the first two seconds or when stderr is not a terminal; then the count,
    its rate and the errors under the names the command gives, redrawn at most once a
    second, and a newline at the end."""
    now, counts = [100.0], [0, 0]
    monkeypatch.setattr("sys.stderr", io.StringIO())
    quiet = Progress(lambda: (counts[0], counts[1]), clock=lambda: now[0])
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    cases = Progress(lambda: (counts[0], counts[1]), ("cases", "failed"), clock=lambda: now[0])
    records = Progress(lambda: (counts[0], counts[1]), clock=lambda: now[0])
    counts[:], now[0] = [1_000, 0], 101.9
    for progress in (quiet, cases, records):
        progress.tick()
    assert terminal.getvalue() == ""
    counts[:], now[0] = [2_000, 1_003], 102.0
    cases.tick()
    assert terminal.getvalue() == "\r2,000 cases, 1,000/s, 1,003 failed"
    now[0] = 102.9
    cases.tick()
    records.tick()
    quiet.tick()
    assert terminal.getvalue() == (
        "\r2,000 cases, 1,000/s, 1,003 failed\r2,000 records, 690/s, 1,003 errors"
    )
    for progress in (quiet, cases, records):
        progress.done()
    assert terminal.getvalue().endswith("errors\n\n")


def test_clear_erases_the_line_and_the_next_tick_draws_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before a line of output, ``clear`` erases the progress line (nothing when it was never
    drawn); the next tick redraws it at once, and ``done`` adds no newline to an erased line."""
    now, counts = [0.0], [0, 0]
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    progress = Progress(lambda: (counts[0], counts[1]), ("letters", "failed again"), lambda: now[0])
    progress.clear()
    assert terminal.getvalue() == ""
    counts[:], now[0] = [4, 1], 2.0
    progress.tick()
    progress.clear()
    assert terminal.getvalue() == "\r4 letters, 2/s, 1 failed again\r\x1b[K"
    counts[0], now[0] = 5, 2.5  # within the second, yet drawn again after the erase
    progress.tick()
    progress.clear()
    progress.done()
    assert terminal.getvalue().endswith("\r5 letters, 2/s, 1 failed again\r\x1b[K")
