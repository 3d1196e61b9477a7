from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.harness import UPSTREAM_KEY, LogCapture, Servers, openai_config


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
