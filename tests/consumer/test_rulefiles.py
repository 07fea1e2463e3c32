"""Rule files checked against what they name outside themselves: ``[webhook] allowed_hosts``."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import structlog

from consumer.config import load_config
from consumer.rulefiles import load_rule_files
from consumer.worker.lifecycle import RuleHolder
from consumer.worker.metrics import Metrics
from consumer.worker.wiring import build
from rules import RuleTableError

HOOK = '[[rules]]\nname = "hook"\n[[rules.actions]]\ntype = "webhook"\nurl = "{url}"\n'


def _rules(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(HOOK.format(url=url))
    return path


def test_a_webhook_to_a_host_not_allowed_is_a_load_problem(tmp_path: Path) -> None:
    """The problem names the file, line, rule and key, and the host but not the query."""
    path = _rules(tmp_path, "https://hooks.example.net/x?code=KEY")
    with pytest.raises(RuleTableError) as caught:
        load_rule_files([path], allowed_hosts=["hooks.example.com", "*.webhook.office.com"])
    (problem,) = caught.value.problems
    assert problem.message_at() == (
        f"{path}:2: rule 'hook': actions[0].url: "
        "host hooks.example.net is not in [webhook] allowed_hosts"
    )
    assert load_rule_files([path]).table.rules[0].name == "hook"


@pytest.mark.parametrize(
    "url", ["https://HOOKS.example.com/x", "https://a.webhook.office.com/webhookb2/{{ event.id }}"]
)
def test_allowed_hosts_and_wildcards_load(tmp_path: Path, url: str) -> None:
    path = _rules(tmp_path, url)
    loaded = load_rule_files([path], allowed_hosts=["hooks.example.com", "*.webhook.office.com"])
    assert len(loaded.table) == 1


def test_a_reload_naming_a_host_not_allowed_is_rejected(tmp_path: Path) -> None:
    """The old table keeps running when a reload names another host."""
    path = _rules(tmp_path, "https://hooks.example.com/x")
    allowed = ("hooks.example.com",)
    loaded = load_rule_files([path], allowed_hosts=allowed)
    log = structlog.get_logger("test").bind()
    holder = RuleHolder([path], loaded.table, log, Metrics(clock=time.time), None, allowed)
    _rules(tmp_path, "https://hooks.example.net/x")
    assert holder.reload() is False
    assert holder() is loaded.table


async def test_the_worker_does_not_start_with_a_host_not_allowed(tmp_path: Path) -> None:
    """``mlevents run`` checks the rules against the config's allowed_hosts before it
    connects to anything."""
    _rules(tmp_path, "https://hooks.example.net/x")
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        '[rules]\nfiles = ["rules.toml"]\n[eventhub]\nname = "hub"\n'
        'connection_string_env = "HUB"\n[webhook]\nallowed_hosts = ["hooks.example.com"]\n'
    )
    config = load_config(config_path, {"HUB": "Endpoint=sb://127.0.0.1/;SharedAccessKey=x"})
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(RuleTableError, match=r"host hooks\.example\.net is not in"):
            await build(config, stack)
