"""The rendered manifests, once per test session."""

from __future__ import annotations

import pytest

from .manifests import BASE, CONNECTION_STRING, EXAMPLE, Object, render, write_example_with


@pytest.fixture(scope="session")
def base() -> list[Object]:
    return render(BASE)


@pytest.fixture(scope="session")
def example() -> list[Object]:
    return render(EXAMPLE)


@pytest.fixture(scope="session")
def example_with_connection_strings(tmp_path_factory: pytest.TempPathFactory) -> list[Object]:
    return render(write_example_with(CONNECTION_STRING, tmp_path_factory.mktemp("overlay")))


@pytest.fixture(scope="session", params=["base", "example", "example+connection-string"])
def rendered(
    request: pytest.FixtureRequest,
    base: list[Object],
    example: list[Object],
    example_with_connection_strings: list[Object],
) -> list[Object]:
    """Every variant: the base alone, the example overlay, and it with connection strings."""
    variants = {
        "base": base,
        "example": example,
        "example+connection-string": example_with_connection_strings,
    }
    return variants[request.param]
