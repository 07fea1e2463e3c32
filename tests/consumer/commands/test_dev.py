"""`mlevents dev`: the local pipeline runs the samples through the example rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    _azure_actions_are_logged_as_their_rendered_requests(first)
    assert (state / "emulator").is_dir() and (state / "checkpoints.sqlite3").is_file()
    second = _dev(state, port)
    assert len([line for line in second if line["event"] == "event.processed"]) == 11
    (checkpoints := state / "checkpoints.sqlite3").unlink()
    third = _dev(state, port)
    assert len([line for line in third if line["event"] == "event.processed"]) == 11
    assert checkpoints.is_file()


WS = (
    "https://management.azure.com/subscriptions/6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c/"
    "resourceGroups/rg-mlops-prod/providers/Microsoft.MachineLearningServices/workspaces/"
    "mlw-prod-weu"
)


def _azure_actions_are_logged_as_their_rendered_requests(lines: list[dict[str, Any]]) -> None:
    """Each Azure action the samples trigger is logged as the ARM requests ``mlevents run``
    would make, rendered from the event (no template left), the token redacted."""
    taken = {
        str(line["action"]): line for line in lines if line["event"] == "dev.azure_action_not_taken"
    }
    assert taken.keys() == {"adf_pipeline_run#0", "aml_job#0", "aml_deploy#0"}
    assert "{{ " not in json.dumps(taken)  # Azure ML's own ${{inputs...}} stay
    deploy = taken["aml_deploy#0"]
    assert deploy["rule"] == "deploy-on-production-registration"
    put = deploy["sends"][2]
    assert (put["method"], put["url"]) == (
        "PUT", f"{WS}/onlineEndpoints/credit-risk/deployments/v8?api-version=2024-04-01"
    )  # fmt: skip
    assert put["headers"]["Authorization"] == "Bearer <redacted>"
    assert put["body"]["properties"]["model"].endswith("/models/credit-risk-xgb/versions/8")
    (job,) = taken["aml_job#0"]["sends"]
    assert job["body"]["properties"]["experimentName"] == "credit-risk-retraining"
