"""The chaos run, small: 300 events, three kills with events in flight, storage stopped and
frozen for 5 s each, one hub connection drop, a slow phase and an error burst from each
peer. ``python -m bench chaos`` runs the full soak."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import run
from .settings import Settings, Timeline

TIMELINE = Timeline(
    storage_freeze=0.03, storage_stop=0.15, slow=0.4, bursts=0.5, kills=(0.55, 0.8),
    kills_after_storage_s=12,
)  # fmt: skip
"""Storage first; the kills once it has been back a while (see ``kills_after_storage_s``)."""
SMALL = Settings(
    events=300, kills=3, storage_stop_s=5, storage_freeze_s=5, hub_drops=1, slow_s=3,
    slow_request_s=1, burst_s=1, send_s=40, settle_s=60, seed=7, timeline=TIMELINE,
)  # fmt: skip


@pytest.mark.timeout(300)
async def test_a_small_chaos_run_loses_nothing_and_every_duplicate_is_explained(
    tmp_path: Path,
) -> None:
    """Every effect happens; a duplicate only where a worker logged an uncertain outcome for
    that decision and chose to repeat it; none at all in a sink that can be asked."""
    findings = await run(SMALL, tmp_path, say=lambda _: None)
    report = "\n".join(findings.lines())
    assert findings.settled, report
    assert findings.lost == [], report
    assert findings.unmatched == [], report
    assert findings.askable_duplicates == [], report
    assert findings.unexpected == [], report
    assert len(findings.kills) == SMALL.kills, report
    assert any(kill.in_flight for kill in findings.kills), report
