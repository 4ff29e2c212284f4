"""Fixtures: the real gateway + mock provider + example MCP server for the e2e tests.

There is no stand-in for the gateway: a test that talks to a gateway talks to the real
binary. The only fake is the third-party OAuth provider (the mock-provider binary).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mcp_auth_client import AuthClient
from tests.stack import (
    ExampleServer,
    Gateway,
    MockProvider,
    Processes,
    binaries,
    start_example,
    start_gateway,
    start_mock,
    stop,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def built() -> tuple[Path, Path]:
    return binaries()


@pytest.fixture(scope="session")
def mock_provider(built: tuple[Path, Path], stack_dir: Path) -> Iterator[MockProvider]:
    mock = start_mock(built[1], stack_dir)
    try:
        yield mock
    finally:
        stop(mock.proc)


@pytest.fixture(scope="session")
def gateway(built: tuple[Path, Path], mock_provider: MockProvider, stack_dir: Path) -> Iterator[Gateway]:
    data_dir = stack_dir / "gateway"
    data_dir.mkdir()
    gw = start_gateway(built[0], mock_provider, data_dir)
    try:
        yield gw
    finally:
        stop(gw.proc)


@pytest.fixture(scope="session")
def example_server(gateway: Gateway, mock_provider: MockProvider, stack_dir: Path) -> Iterator[ExampleServer]:
    server = start_example(gateway, mock_provider, stack_dir)
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture
def mock(mock_provider: MockProvider) -> Iterator[MockProvider]:
    """The mock provider, reset to defaults before and after the test."""
    mock_provider.reset()
    yield mock_provider
    mock_provider.reset()


@pytest.fixture
async def auth(gateway: Gateway) -> AsyncIterator[AuthClient]:
    async with AuthClient(gateway.url, gateway.api_key, timeout=15.0) as client:
        yield client


@pytest.fixture
def user() -> str:
    """A fresh user, so tests sharing the gateway never see each other's credentials."""
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture
def processes(built: tuple[Path, Path], tmp_path: Path) -> Iterator[Processes]:
    """Starts extra mock providers, gateways and replicas for one test; stops them after."""
    started = Processes(built, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
