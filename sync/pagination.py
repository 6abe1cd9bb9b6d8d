"""Paging call history: every page of every window, fetched concurrently.

Alohub's history endpoints page from 1 with `limit` and report `totalRecord`.
The server may cap `limit`, so the page size is what page 1 actually holds,
and a window is paged until `totalRecord` records have arrived, never until a
short page. If the total grew while paging (a call ended meanwhile), one more
page is asked for until the total is reached or a page comes back empty. An
answer without `totalRecord` falls back to paging until a short page.

`fetch_pages` runs as the producer of a bounded pipeline: up to `concurrency`
requests in flight (the client paces them to the rate limit), earlier windows
first, results put on a bounded queue so memory stays flat while the writer
catches up. Page 1 of every window goes out early, so the totals (and a
progress bar's length) are known soon.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.client import Envelope
from sync.sources import Window

Fetch = Callable[[Window, int, int], Awaitable[Envelope]]


@dataclass(frozen=True)
class PageResult:
    window: int
    page: int
    records: list[dict[str, Any]]
    total: int | None


@dataclass(frozen=True)
class WindowDone:
    """Every record of window `window` has been put on the queue before this."""

    window: int
    pages: int
    records: int
    total: int | None


@dataclass(frozen=True)
class StreamEnd:
    error: BaseException | None = None


Item = PageResult | WindowDone | StreamEnd


@dataclass
class _State:
    total: int | None = None
    size: int = 0
    last_page: int = 1
    received: int = 0
    pages: int = 0
    outstanding: int = 1
    empty_extra: bool = False


@dataclass
class Pager:
    """Decides which pages each window still needs (no I/O; tested on its own)."""

    windows: int
    limit: int
    states: list[_State] = field(init=False)

    def __post_init__(self) -> None:
        self.states = [_State() for _ in range(self.windows)]

    def first_pages(self) -> list[tuple[int, int]]:
        return [(w, 1) for w in range(self.windows)]

    def answered(self, window: int, page: int, envelope: Envelope) -> tuple[list[tuple[int, int]], bool]:
        """Record an answer; return the further pages to fetch and whether the window is done."""
        st = self.states[window]
        n = len(envelope.data)
        st.outstanding -= 1
        st.pages += 1
        st.received += n
        if envelope.total is not None:
            st.total = envelope.total
        more: list[tuple[int, int]] = []
        if page == 1:
            if envelope.total is None:
                st.size = self.limit
            else:
                # A capped server answers fewer than `limit` records on a full page.
                st.size = n if 0 < n < self.limit and envelope.total > n else self.limit
                if n > 0:
                    st.last_page = max(1, math.ceil(envelope.total / st.size))
                    more = [(window, p) for p in range(2, st.last_page + 1)]
        if envelope.total is None:
            if n >= st.size and n > 0:
                st.last_page = page + 1
                more = [(window, page + 1)]
        if page > 1 and n == 0:
            st.empty_extra = True  # past the end: the total shrank, or it was wrong
        st.outstanding += len(more)
        if st.outstanding == 0 and st.total is not None and envelope.total is not None \
                and st.received < st.total and st.received > 0 and not st.empty_extra:
            st.last_page += 1
            more = [(window, st.last_page)]
            st.outstanding += 1
        return more, st.outstanding == 0


async def fetch_pages(fetch: Fetch, windows: Sequence[Window], out: asyncio.Queue[Item], *, limit: int,
                      concurrency: int) -> None:
    """Put every page of `windows` on `out`, then `StreamEnd` (carrying the error, if any)."""
    pager = Pager(len(windows), limit)
    heap = pager.first_pages()
    heapq.heapify(heap)
    running: dict[asyncio.Task[Envelope], tuple[int, int]] = {}
    error: BaseException | None = None
    try:
        while heap or running:
            while heap and len(running) < concurrency:
                w, p = heapq.heappop(heap)
                running[asyncio.ensure_future(fetch(windows[w], p, limit))] = (w, p)
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: running[t]):
                w, p = running.pop(task)
                envelope = task.result()
                more, finished = pager.answered(w, p, envelope)
                for item in more:
                    heapq.heappush(heap, item)
                await out.put(PageResult(w, p, envelope.data, envelope.total))
                if finished:
                    st = pager.states[w]
                    await out.put(WindowDone(w, st.pages, st.received, st.total))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer
        error = exc
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    await out.put(StreamEnd(error))
