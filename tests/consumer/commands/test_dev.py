"""`mlevents dev`: the local pipeline runs the samples through the example rules."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consumer.commands.dev import dev_settings, with_fresh_ids
from consumer.eventfiles import EventRecord
from tests.support import ROOT, SAMPLES
from tests.support.ports import free_port
from tests.support.waiting import until

ENV = {**os.environ, "MLEVENTS_LOG_FORMAT": "json"}


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _dev(state: Path, port: int, *extra: str) -> tuple[str, list[dict[str, Any]]]:
    """Standard output and the JSON log lines of one ``dev --exit-when-done``."""
    command = ["dev", "--state", str(state), "--port", str(port), "--http-port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "consumer", *command, "--exit-when-done", *extra],
        cwd=ROOT, env=ENV, capture_output=True, timeout=90, check=True,
    )  # fmt: skip
    return done.stdout.decode(), _lines(done.stderr.decode())


def _skipped(lines: list[dict[str, Any]]) -> list[str]:
    """The action outcomes the ledger skipped as done before."""
    return [
        outcome
        for line in lines
        if line["event"] == "event.processed"
        for outcome in line["actions"]
        if "skipped" in outcome
    ]


def test_dev_processes_the_samples_and_keeps_state_together(tmp_path: Path) -> None:
    """The samples are handled and matched; a second run reads only what is new. Each run
    publishes them under fresh ids, so the ledger kept with the state skips none of them."""
    state, port = tmp_path / "dev", free_port()
    _, first = _dev(state, port, "--fresh")
    processed = [line for line in first if line["event"] == "event.processed"]
    assert len(processed) == 11
    matched = {rule for line in processed for rule in line["matched"]}
    assert {
        "email-on-failed-run",
        "retrain-on-model-monitor-breach",
        "deploy-on-production-registration",
        "fan-out-workspace-events",
    } <= matched
    assert any(line["event"] == "dev.webhook_received" for line in first)
    _azure_actions_are_logged_as_their_rendered_requests(first)
    assert (state / "emulator").is_dir() and (state / "checkpoints.sqlite3").is_file()
    output, second = _dev(state, port)
    assert len([line for line in second if line["event"] == "event.processed"]) == 11
    assert _skipped(first) == _skipped(second) == []
    (checkpoints := state / "checkpoints.sqlite3").unlink()
    _, third = _dev(state, port)
    assert len([line for line in third if line["event"] == "event.processed"]) == 11
    assert checkpoints.is_file()
    # The summary on standard output: what was handled and done, and where it went.
    summary = output.splitlines()
    assert summary[0] == "mlevents dev stopped: 11 events handled"
    assert "  webhook           10 ok" in summary
    assert "  aml_job           1 ok (logged only: no Azure here)" in summary
    assert f"  emails            {state / 'outbox'}/*.eml" in summary
    assert f"  dead letters      0 this run, in {state / 'deadletters'}" in summary


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


async def test_dev_prints_a_send_line_that_works_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """Without ``--exit-when-done``: once the samples are handled, a ``send`` line with the
    emulator's whole connection string; sending a sample with it is acted on (not skipped);
    /healthz answers on ``--http-port``; SIGINT drains, prints the summary and exits 0."""
    http_port, out, log = free_port(), tmp_path / "dev.out", tmp_path / "dev.log"
    command = ["dev", "--state", str(tmp_path / "dev"), "--port", str(free_port()),
               "--http-port", str(http_port)]  # fmt: skip
    with out.open("wb") as stdout, log.open("wb") as stderr:
        dev = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumer", *command,
            cwd=ROOT, env=ENV, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    sample_id = json.loads((SAMPLES / "run-failed.json").read_text())[0]["id"]

    def processed() -> list[dict[str, Any]]:
        lines = _lines(log.read_text())
        return [x for x in lines if x["event"] == "event.processed" and x["event_id"] == sample_id]

    try:
        await until(lambda: "--connection-string" in out.read_text(), 60, "the send line")
        line = out.read_text().splitlines()[1]
        assert "SharedAccessKey=emulator-key;" in line and "***" not in line
        healthz = f"http://127.0.0.1:{http_port}/healthz"
        async with aiohttp.ClientSession() as http, http.get(healthz) as response:
            assert response.status == 200
        send = await asyncio.create_subprocess_exec(
            *shlex.split(line), cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE
        )
        sent, _ = await send.communicate()
        assert (send.returncode, sent) == (0, b"sent 1 events\n")
        await until(processed, 60, "the sample sent processed")
        assert _skipped(processed()) == []
        dev.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(dev.wait(), 60) == 0
    finally:
        if dev.returncode is None:
            dev.kill()
            await dev.wait()
    assert out.read_text().splitlines()[2] == "mlevents dev stopped: 12 events handled"


def test_ports_in_use_stop_dev_with_one_line(tmp_path: Path) -> None:
    """The emulator's port or the --http-port already taken: exit 2, one line naming it."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for option, message in (
            ("--port", f"the emulator cannot listen on 127.0.0.1:{port}: Address already in use"),
            ("--http-port", f"cannot serve /healthz and /metrics on 0.0.0.0:{port}: Address"),
        ):
            ports = {"--port": str(free_port()), "--http-port": "0", option: str(port)}
            done = subprocess.run(
                [sys.executable, "-m", "consumer", "dev", "--state", str(tmp_path / "dev"),
                 *(part for pair in ports.items() for part in pair), "--exit-when-done"],
                cwd=ROOT, env=ENV, capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 2, option
            errors = [x for x in done.stderr.decode().splitlines() if not x.startswith("{")]
            assert len(errors) == 1 and errors[0].startswith(f"mlevents: {message}"), errors


def test_fresh_ids_for_every_event_and_every_run() -> None:
    """Every event of a body gets a new id, in either schema, single or in an array, anew on
    every call; the rest of the body keeps its values, numbers to the last digit."""
    grid = b'[{"id": "a", "data": {"c": 0.83503490684792081, "n": 1e2}}, {"id": "a"}]'
    cloud = b'{"specversion": "1.0", "id": "b", "source": "s", "type": "t"}'
    records = [EventRecord("x", grid), EventRecord("y", cloud), EventRecord("z", b"not json")]
    first, second = list(with_fresh_ids(records)), list(with_fresh_ids(records))
    ids = [
        event["id"]
        for run in (first, second)
        for record in run[:2]
        for event in (lambda body: body if isinstance(body, list) else [body])(
            json.loads(record.body)
        )
    ]
    assert len(set(ids)) == len(ids) == 6 and not {"a", "b"} & set(ids)
    assert b'"c":0.83503490684792081,"n":1E+2' in first[0].body
    assert json.loads(first[1].body)["specversion"] == "1.0"
    assert first[2] == records[2]
    assert [r.where for r in first] == ["x", "y", "z"]


def test_dev_reads_what_rules_take_from_the_environment_and_no_section_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook's ``url_env`` is read, so ``dev`` runs the rules as production will; the
    hub's connection string is not asked for (``dev`` serves its own hub)."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "hook"\n[[rules.actions]]\ntype = "webhook"\n'
        'url_env = "TEAMS_WEBHOOK_URL"\n'
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[rules]\nfiles = ["{rules}"]\n'
        '[eventhub]\nname = "hub"\nconnection_string_env = "NOT_SET_ANYWHERE"\n'
        "[http]\nport = 9999\n"
    )
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", "https://example.webhook.office.com/x?sig=1")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    settings = dev_settings(str(config), http_port=0)
    assert settings.secrets("TEAMS_WEBHOOK_URL") == "https://example.webhook.office.com/x?sig=1"
    assert settings.http.port == 0
    assert dev_settings(str(config), http_port=None).http.port == 9999
