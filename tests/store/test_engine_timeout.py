"""The statement time limit: the service's engines give a statement up after
it; migrations and rebuilds, which may take minutes on a large store, run
without it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from store.engine import create_engine, is_unavailable


async def test_a_statement_over_the_limit_is_given_up_and_none_means_no_limit(db_url: str) -> None:
    limited = create_engine(db_url, pool_size=1, command_timeout=0.2)
    unlimited = create_engine(db_url, pool_size=1, command_timeout=None)
    try:
        with pytest.raises(Exception) as info:
            async with limited.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.6)"))
        assert is_unavailable(info.value)
        async with unlimited.connect() as conn:
            assert (await conn.execute(text("SELECT pg_sleep(0.6), 1"))).one()[1] == 1
    finally:
        await limited.dispose()
        await unlimited.dispose()
