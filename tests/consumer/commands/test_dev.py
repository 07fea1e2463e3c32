"""`mlevents dev`: the local pipeline runs the samples through the example rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.support.ports import free_port


def _dev(state: Path, port: int, *extra: str) -> list[dict[str, object]]:
    env = {**os.environ, "MLEVENTS_LOG_FORMAT": "json"}
    command = ["dev", "--state", str(state), "--port", str(port), "--exit-when-done", *extra]
    done = subprocess.run(
        [sys.executable, "-m", "consumer", *command],
        cwd=ROOT, env=env, capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in done.stderr.decode().splitlines() if line.startswith("{")]


def test_dev_processes_the_samples_and_keeps_state_together(tmp_path: Path) -> None:
    """The samples are handled and matched; a second run reads only what is new."""
    state, port = tmp_path / "dev", free_port()
    first = _dev(state, port, "--fresh")
    processed = [line for line in first if line["event"] == "event.processed"]
    assert len(processed) == 11
    matched = {rule for line in processed for rule in line["matched"]}  # type: ignore[attr-defined]
    assert {
        "email-on-failed-run",
        "retrain-on-model-monitor-breach",
        "deploy-on-production-registration",
        "fan-out-workspace-events",
    } <= matched
    assert any(line["event"] == "dev.webhook_received" for line in first)
    assert (state / "emulator").is_dir() and (state / "checkpoints.sqlite3").is_file()
    second = _dev(state, port)
    assert len([line for line in second if line["event"] == "event.processed"]) == 11
    (checkpoints := state / "checkpoints.sqlite3").unlink()
    third = _dev(state, port)
    assert len([line for line in third if line["event"] == "event.processed"]) == 11
    assert checkpoints.is_file()
