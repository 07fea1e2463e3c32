"""The shape of the tree: the pure core stays pure, the emulator stands alone, the shell
reaches the emulator only from its commands, offline commands load no Azure SDK, and public
names are what __all__ says."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import rules

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {
    "asyncio", "consumer", "emulator", "azure", "aiohttp", "socket", "subprocess", "os",
    "pathlib", "io", "shutil", "threading", "logging", "structlog", "fastavro", "httpx",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    """The top-level packages ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


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


@pytest.mark.parametrize("path", _python_files("emulator"), ids=_name)
def test_emulator_imports_neither_the_rules_nor_the_shell(path: Path) -> None:
    """emulator/ is an Event Hubs server: it runs without rules/ and consumer/."""
    assert _imports(path).isdisjoint({"rules", "consumer"})


EMULATOR_USERS = {"consumer/commands/main.py", "consumer/commands/dev.py"}
"""The ``emulator`` command's parser, and ``dev``, which runs the emulator."""


def test_the_shell_imports_the_emulator_only_from_its_commands() -> None:
    """Only the ``emulator`` and ``dev`` commands import emulator/; the worker never does."""
    importers = {_name(p) for p in _python_files("consumer") if "emulator" in _imports(p)}
    assert importers == EMULATOR_USERS


EXAMPLES = ROOT / "consumer" / "examples"
SAMPLE = EXAMPLES / "events" / "run-failed.json"
HEAVY = ("azure", "aiohttp", "emulator.server", "consumer.worker", "consumer.stores")
"""What an offline command has no use for: Azure SDKs, HTTP, the emulator's server, the worker
and its stores."""


def _loaded_by(argv: list[str], tmp_path: Path) -> list[str]:
    """The modules a fresh interpreter has loaded after ``mlevents ARGV`` (help exits too)."""
    out = tmp_path / "modules.json"
    script = (
        "import contextlib, json, sys\n"
        "from consumer.commands.main import main\n"
        "with contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, check=True)
    loaded: list[str] = json.loads(out.read_text())
    return loaded


@pytest.mark.parametrize(
    "argv",
    [
        ["match", "--rules", str(EXAMPLES / "rules.toml"), str(SAMPLE)],
        ["explain", "--rules", str(EXAMPLES / "rules.toml"), "--rule", "email-on-failed-run",
         str(SAMPLE), "--render"],
        ["test", "--render"],
        ["lint", "--rules", str(EXAMPLES / "rules.toml")],
        ["export", "--rules", str(EXAMPLES / "rules.toml"), "--format", "arm"],
    ],
    ids=lambda argv: argv[0],
)  # fmt: skip
def test_offline_commands_load_no_azure_sdk(argv: list[str], tmp_path: Path) -> None:
    """``match``, ``explain``, ``test``, ``lint`` and ``export`` run without Azure, HTTP or
    the worker, also when they render what every action would send (``--render``; ``test``
    and ``lint`` render actions whether or not it is given), the ARM calls and webhook
    requests too."""
    loaded = _loaded_by(argv, tmp_path)
    assert "rules" in loaded  # the command ran
    assert [m for m in loaded if m.startswith(HEAVY)] == []


def test_help_loads_neither_the_rule_engine_nor_any_sdk(tmp_path: Path) -> None:
    """Building the parser (``mlevents match --help``) imports only argparse-level modules:
    the rule engine's template library, the SDKs, the completion generator and the package
    metadata (for ``--version``) load when a command, or that option, runs."""
    loaded = _loaded_by(["match", "--help"], tmp_path)
    assert "consumer.commands.main" in loaded
    late = (*HEAVY, "rules", "jinja2", "fastavro", "shtab", "importlib.metadata")
    assert [m for m in loaded if m.startswith(late)] == []
