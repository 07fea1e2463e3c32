"""The files deploy/ ships: the example scenarios as rules that only log, a job spec identical
to consumer/examples/, config.toml files that the worker's own loaders accept."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from consumer.config import load_config
from consumer.rulefiles import load_rule_files

from .manifests import BASE, CONNECTION_STRING, ROOT

EXAMPLES = ROOT / "consumer" / "examples"


def test_the_job_spec_is_a_copy_of_the_example() -> None:
    """kustomize reads no file outside deploy/base, so the base holds a copy; it must not
    drift from the shipped example."""
    name = "jobs/retrain.yml"
    assert (BASE / name).read_bytes() == (EXAMPLES / name).read_bytes()


def test_base_rules_are_the_example_scenarios_and_only_log() -> None:
    """The base's rules are the examples' rules, same names and filters in the same order,
    but every action is a log line: applied as it is, the base sends nothing, starts
    nothing, and dead-letters nothing for want of a real address."""
    base = load_rule_files([BASE / "rules.toml"]).table.rules
    examples = load_rule_files([EXAMPLES / "rules.toml"]).table.rules
    assert [(r.name, r.filter.source) for r in base] == [
        (r.name, r.filter.source) for r in examples
    ]
    assert [type(a).__name__ for r in base for a in r.actions] == ["LogAction"] * len(base)


def test_base_config_and_its_rules_load() -> None:
    config = load_config(BASE / "config.toml", environ={})
    assert config.eventhub is not None
    assert config.eventhub.fully_qualified_namespace
    assert config.azure.credential == "workload_identity"
    loaded = load_rule_files(config.rules.files, secrets=config.secrets)
    assert loaded.table.rules


# Keys that choose how to reach Azure; everything else is the same in both config files.
_AUTHENTICATION = {
    "fully_qualified_namespace",
    "connection_string_env",
    "account_url",
    "credential",
}


def _without_authentication(path: Path) -> dict[str, Any]:
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    return {
        section: {key: value for key, value in table.items() if key not in _AUTHENTICATION}
        for section, table in document.items()
    }


def test_connection_string_config_differs_only_in_authentication() -> None:
    base = _without_authentication(BASE / "config.toml")
    variant = _without_authentication(CONNECTION_STRING / "config.toml")
    assert variant == base
