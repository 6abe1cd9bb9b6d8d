"""A PostgreSQL server of a test's own, which the test may stop and start.

The session's server is shared by every test; a chaos test gets the embedded
server in its own data directory instead (a few seconds to initialise).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from store.embedded import EmbeddedPostgres, ensure_database
from tests.conftest import server_dir


class StoppablePostgres:
    def __init__(self, data_dir: Path | None = None) -> None:
        # `data_dir` is only a name: pytest's tmp_path is 0700, which the server
        # user cannot pass through when the tests run as root; the data goes to
        # a directory of its own, removed by `stop_now`.
        del data_dir
        self.dir = server_dir("callstore-chaos-pg-")
        # fsync off is safe here: it is only ever stopped cleanly (mode fast).
        self.server = EmbeddedPostgres(self.dir, unsafe_fast=True)

    async def start(self) -> str:
        """Start (initialising on first use) and return the URL of database `callstore`."""
        await asyncio.to_thread(self.server.ensure_started)
        await ensure_database(self.server)
        return self.server.url()

    async def stop(self) -> None:
        await asyncio.to_thread(self.server.stop, "fast")

    def stop_now(self) -> None:
        """For finally blocks: stopped, and its data removed."""
        try:
            self.server.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
