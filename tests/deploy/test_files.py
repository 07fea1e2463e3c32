"""The files deploy/ ships: rule copies identical to consumer/examples/, config.toml files
that the worker's own loaders accept."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from consumer.config import load_config
from consumer.rulefiles import load_rule_files

from .manifests import BASE, CONNECTION_STRING, ROOT

EXAMPLES = ROOT / "consumer" / "examples"


@pytest.mark.parametrize("name", ["rules.toml", "jobs/retrain.yml"])
def test_rule_files_are_copies_of_the_examples(name: str) -> None:
    """kustomize reads no file outside deploy/base, so the base holds copies; they must not
    drift from the shipped examples."""
    assert (BASE / name).read_bytes() == (EXAMPLES / name).read_bytes()


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
