"""The Azure ML job action against a local ARM server: body, name, duplicates, retries."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consumer.actions import jobspec
from consumer.actions.amljob import AmlJobExecutor, job_name
from consumer.actions.azure import ArmClient
from consumer.actions.jobspec import load_job_spec
from consumer.errors import PermanentActionError, TransientActionError
from consumer.worker.retrying import RetryPolicy
from rules import Decision
from tests.support.arm import TOKEN, ArmServer, FakeCredential, Fault, decision
from tests.support.factories import action_session

SUB = "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c"
JOBS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-mlops-prod/providers"
    "/Microsoft.MachineLearningServices/workspaces/mlw-prod-weu/jobs/"
)
BREACH = "model-monitor-breach.json"
SPEC = """\
properties:
  jobType: Command
  displayName: "retrain after {{ run.id }}"
  description: "{{ data.runTags.azureml_modelmonitor_threshold_breached }}"
  command: python train.py --data ${{inputs.training_data}} --seed 7
  environmentId: azureml:sklearn-env:3
  computeId: cpu-cluster
  inputs:
    training_data:
      jobInputType: uri_folder
      uri: "azureml:credit-data@latest"
  tags:
    team: risk
    trigger: "{{ event.type }}"
"""
ACTION: dict[str, Any] = {
    "type": "aml_job",
    "subscription_id": "{{ workspace.subscription_id }}",
    "resource_group": "rg-mlops-prod",
    "workspace": "{{ workspace.name }}",
    "job": "jobs/retrain.yml",
    "experiment_name": "{{ run.experiment_name }}-retrain",
}


@pytest.fixture
async def server() -> AsyncIterator[ArmServer]:
    async with ArmServer() as peer:
        yield peer


@pytest.fixture
async def arm(server: ArmServer) -> AsyncIterator[ArmClient]:
    async with action_session("azure") as session:
        yield ArmClient(session, FakeCredential(), base_url=server.base_url)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "retrain.yml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def _decision(rules_dir: Path, **changes: Any) -> Decision:
    return decision(BREACH, {**ACTION, **changes}, rules_file=str(rules_dir / "rules.json"))


async def test_puts_the_rendered_spec_under_a_name_derived_from_the_decision(
    server: ArmServer, arm: ArmClient, rules_dir: Path
) -> None:
    """One PUT of the spec (found next to the rules file), its strings rendered but Azure
    ML's own ${{...}} bindings kept, with the experiment name and mlevents tags added."""
    chosen = _decision(rules_dir)
    detail = await AmlJobExecutor(arm)(chosen)
    name = job_name(chosen.key)
    assert re.fullmatch(r"mlevents-[0-9a-f]{24}", name)
    assert detail == f"job {name} submitted"
    (call,) = server.requests
    assert (call.method, call.path, call.query) == (
        "PUT", JOBS + name, {"api-version": "2024-04-01"})  # fmt: skip
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.body == {
        "properties": {
            "jobType": "Command",
            "displayName": "retrain after credit-risk-monitor-20240517",
            "description": "This monitoring run has failed due to one or more features "
            "violating metric thresholds.",
            "command": "python train.py --data ${{inputs.training_data}} --seed 7",
            "environmentId": "azureml:sklearn-env:3",
            "computeId": "cpu-cluster",
            "inputs": {
                "training_data": {"jobInputType": "uri_folder", "uri": "azureml:credit-data@latest"}
            },
            "experimentName": "credit-risk-monitor-retrain",
            "tags": {
                "team": "risk",
                "trigger": "Microsoft.MachineLearningServices.RunStatusChanged",
                "mlevents.eventId": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
                "mlevents.rule": "r",
            },
        }
    }


async def test_the_name_depends_on_the_decision_key_only() -> None:
    """Same event, rule and action position, same name; any other, another."""
    assert job_name("e1/r/0") == job_name("e1/r/0")
    assert len({job_name("e1/r/0"), job_name("e1/r/1"), job_name("e2/r/0")}) == 3


async def test_a_json_spec_and_no_experiment_name(
    server: ArmServer, arm: ArmClient, tmp_path: Path
) -> None:
    """JSON specs work too; without experiment_name the spec's own stays (or none)."""
    spec = {"properties": {"jobType": "Pipeline", "experimentName": "x", "jobs": {}}}
    (tmp_path / "job.json").write_text(json.dumps(spec), encoding="utf-8")
    action = {**ACTION, "job": "job.json"}
    del action["experiment_name"]
    await AmlJobExecutor(arm)(decision(BREACH, action, rules_file=str(tmp_path / "r.json")))
    body = server.requests[0].body
    assert body["properties"]["experimentName"] == "x"
    assert body["properties"]["jobType"] == "Pipeline"
    assert set(body["properties"]["tags"]) == {"mlevents.eventId", "mlevents.rule"}


async def test_a_redelivery_meets_the_existing_job_and_succeeds(
    server: ArmServer, arm: ArmClient, rules_dir: Path
) -> None:
    """The second PUT of the same name gets 409 "already exists": done before, one job."""
    executor = AmlJobExecutor(arm)
    chosen = _decision(rules_dir)
    assert (await executor(chosen)).endswith(" submitted")
    assert await executor(chosen) == f"job {job_name(chosen.key)} already submitted"
    assert len(server.calls("job")) == 2
    assert list(server.jobs) == [job_name(chosen.key)]


async def test_a_400_user_error_saying_the_job_exists_is_success_too(
    server: ArmServer, arm: ArmClient, rules_dir: Path
) -> None:
    """Some api-versions answer the duplicate with 400 UserError; any other 400 fails."""
    duplicate = "A job with this name already exists. If you are trying to update ..."
    server.inject("job", Fault(400, code="UserError", message=duplicate))
    server.inject("job", Fault(400, code="UserError", message="Compute cpu-cluster not found"))
    assert (await AmlJobExecutor(arm)(_decision(rules_dir))).endswith(" already submitted")
    with pytest.raises(PermanentActionError, match="HTTP 400: UserError: Compute cpu-cluster"):
        await AmlJobExecutor(arm)(_decision(rules_dir))


async def test_429_then_201_through_the_retry_policy_is_one_job(
    server: ArmServer, arm: ArmClient, rules_dir: Path
) -> None:
    """Throttled once, the policy waits at least Retry-After and the second try submits."""
    server.inject("job", Fault(429, retry_after="7"))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    executor = AmlJobExecutor(arm)
    chosen = _decision(rules_dir)
    detail, attempts = await RetryPolicy(sleep=sleep).call(lambda: executor(chosen))
    assert (detail, attempts) == (f"job {job_name(chosen.key)} submitted", 2)
    assert len(waits) == 1 and waits[0] >= 7
    assert len(server.calls("job")) == 2 and len(server.jobs) == 1


async def test_a_lost_response_then_retry_is_one_job(
    server: ArmServer, arm: ArmClient, rules_dir: Path
) -> None:
    """The job was created but the answer was a 500: the retry meets it and succeeds."""
    server.inject("job", Fault(500, lost=True))
    executor = AmlJobExecutor(arm)
    chosen = _decision(rules_dir)

    async def instant(seconds: float) -> None:
        return None

    detail, attempts = await RetryPolicy(sleep=instant).call(lambda: executor(chosen))
    assert (detail, attempts) == (f"job {job_name(chosen.key)} already submitted", 2)
    assert len(server.jobs) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, TransientActionError), (503, TransientActionError), (404, PermanentActionError),
     (403, PermanentActionError)],
)  # fmt: skip
async def test_other_failures_are_classified(
    server: ArmServer, arm: ArmClient, rules_dir: Path, status: int, error: type[Exception]
) -> None:
    """The ARM client's classification holds for jobs (404: no such workspace)."""
    server.inject("job", Fault(status, code="Code", message="Nope."))
    with pytest.raises(error, match=f"PUT {JOBS}mlevents-[0-9a-f]+ answered HTTP {status}"):
        await AmlJobExecutor(arm)(_decision(rules_dir))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "cannot read"),
        ("properties: [unclosed", "does not parse"),
        ("type: command\ncommand: python train.py\n", "needs 'properties.jobType'"),
        (
            "properties:\n  jobType: Command\n  displayName: '{{ run.id '\n",
            "template .* does not parse",
        ),
    ],
)
async def test_a_bad_spec_file_is_permanent_and_named(
    server: ArmServer, arm: ArmClient, rules_dir: Path, text: str | None, problem: str
) -> None:
    """Missing, unparsable, CLI-shaped (not the REST body) or with a broken template."""
    spec = rules_dir / "jobs" / "retrain.yml"
    if text is None:
        spec.unlink()
    else:
        spec.write_text(text, encoding="utf-8")
    with pytest.raises(PermanentActionError, match=f"job spec {re.escape(str(spec))}: {problem}"):
        await AmlJobExecutor(arm)(_decision(rules_dir))
    with pytest.raises(PermanentActionError, match=re.escape(str(spec))):
        load_job_spec(spec)
    assert server.requests == []


async def test_a_spec_template_the_event_cannot_fill_is_permanent(
    server: ArmServer, arm: ArmClient, rules_dir: Path
) -> None:
    """A spec reading a field the event lacks fails, naming the file; nothing is sent."""
    spec = rules_dir / "jobs" / "retrain.yml"
    spec.write_text("properties:\n  jobType: Command\n  x: '{{ model.name }}'\n", "utf-8")
    with pytest.raises(PermanentActionError, match=r"retrain\.yml: template '\{\{ model\.name"):
        await AmlJobExecutor(arm)(_decision(rules_dir))
    assert server.requests == []


async def test_specs_are_read_once_per_file_version(
    server: ArmServer, arm: ArmClient, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spec is parsed once, and again only after the file changes."""
    loads: list[Path] = []

    def counting(path: Path) -> dict[str, Any]:
        loads.append(path)
        return load_job_spec(path)

    monkeypatch.setattr(jobspec, "load_job_spec", counting)
    executor = AmlJobExecutor(arm)
    await executor(_decision(rules_dir, experiment_name="a"))
    await executor(decision(BREACH, {**ACTION, "experiment_name": "b"}, str(rules_dir / "x.json")))
    assert len(loads) == 1
    spec = rules_dir / "jobs" / "retrain.yml"
    spec.write_text(SPEC.replace("cpu-cluster", "gpu-cluster"), encoding="utf-8")
    stat = spec.stat()
    os.utime(spec, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await executor(_decision(rules_dir, experiment_name="c"))
    assert len(loads) == 2
    assert server.requests[-1].body["properties"]["computeId"] == "gpu-cluster"


async def test_an_uncertain_job_is_found_by_its_name(
    server: ArmServer, arm: ArmClient, rules_dir: Path
) -> None:
    """The job's name comes from the decision key, so a GET by that name says whether an
    earlier holder submitted it."""
    chosen, executor = _decision(rules_dir), AmlJobExecutor(arm)
    assert executor.can_find(chosen.action)
    assert await executor.find(chosen, 0.0) is None
    await executor(chosen)
    name = job_name(chosen.key)
    assert await executor.find(chosen, 0.0) == f"job {name} found (Running)"
    assert [call.path for call in server.calls("job.get")] == [JOBS + name] * 2
