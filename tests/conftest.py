from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.harness import UPSTREAM_KEY, LogCapture, Postgres, Servers, free_loopback_port, openai_config, start_redis

# Property tests check behaviour, not speed: Hypothesis's default 200 ms deadline per example is a
# timing assertion, and on a shared CI machine a GC pause or a noisy neighbour turns it into a flake.
settings.register_profile("trigate", deadline=None)
settings.load_profile("trigate")


@pytest.fixture(scope="session")
def access_log() -> Iterator[LogCapture]:
    handler = LogCapture()
    logger = logging.getLogger("trigate.access")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture(scope="session")
def servers(access_log: LogCapture) -> Iterator[Servers]:
    """One fake upstream and one gateway shared by the e2e tests that don't reconfigure them."""
    with Servers(openai_config, mock_key=UPSTREAM_KEY) as s:
        yield s


@pytest.fixture
def mock(servers: Servers):
    """The shared fake upstream, with faults cleared before each test."""
    servers.mock.reset()
    return servers.mock


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of the suite's own, on a free loopback port (CI installs the package)."""
    port = free_loopback_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server of the suite's own, on a free loopback port (CI installs the package);
    its URL, for the ``trigate`` database."""
    port = free_loopback_port()
    server = Postgres(port)
    yield server.url
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """The suite's PostgreSQL, emptied of the gateway's tables before each test."""
    import psycopg

    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute("drop schema public cascade")
        conn.execute("create schema public")
    return postgres_server


@pytest.fixture(scope="session", autouse=True)
def state_files_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Gateways whose config names no state files write the defaults (trigate.sqlite3, ...) relative
    to the working directory: the suite's land in a directory of its own, not in the checkout."""
    import os

    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)
