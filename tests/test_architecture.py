"""The shape of the tree: the pure core stays pure, public names are what __all__ says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rules

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {
    "asyncio", "consumer", "emulator", "azure", "aiohttp", "socket", "subprocess", "os",
    "pathlib", "io", "shutil", "threading", "logging", "structlog", "fastavro", "httpx",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "rules").glob("*.py")), ids=lambda p: p.name)
def test_rules_package_does_no_io_and_imports_nothing_from_the_shell(path: Path) -> None:
    """rules/ imports no asyncio, no I/O modules and nothing from consumer/ or emulator/."""
    assert _imports(path).isdisjoint(FORBIDDEN_IN_CORE)


def test_rules_all_lists_exactly_the_public_names() -> None:
    """Every public name of the rules package is in __all__, and every __all__ name exists."""
    public = {name for name in vars(rules) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(rules, name)).__name__ == "module"}
    assert set(rules.__all__) == public - modules


def test_only_config_reads_the_environment() -> None:
    """No module but consumer/config.py reads os.environ or os.getenv."""
    offenders = []
    for path in [*ROOT.glob("rules/**/*.py"), *ROOT.glob("consumer/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        if ("os.environ" in text or "getenv" in text) and path.name != "config.py":
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
