from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .helpers import ReviewSession, RunningServer, run_server
from .tiny_pipeline import tiny_pipeline_dir  # noqa: F401  (a session fixture)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A real server with default settings on a free port, its data in tmp_path."""
    async with run_server(tmp_path / "data") as running:
        yield running


@pytest.fixture
async def session(server: RunningServer) -> ReviewSession:
    """A new review session with one share-link token per role."""
    return await server.new_session()
