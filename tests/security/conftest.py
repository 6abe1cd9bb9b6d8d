from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.security.world import World, world_of


@pytest.fixture
async def world(engine: AsyncEngine) -> AsyncIterator[World]:
    async for w in world_of(engine):
        yield w
