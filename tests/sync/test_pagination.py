"""The pager's decisions: page until totalRecord, whatever the server's cap."""

from __future__ import annotations

from sync.client import Envelope
from sync.pagination import Pager


def env(n: int, total: int | None) -> Envelope:
    return Envelope(total=total, data=[{"call_id": str(i)} for i in range(n)])


def test_a_capped_limit_pages_by_what_page_one_holds() -> None:
    pager = Pager(1, limit=500)
    more, done = pager.answered(0, 1, env(100, 250))  # the server capped 500 to 100
    assert more == [(0, 2), (0, 3)] and not done
    assert pager.answered(0, 3, env(50, 250)) == ([], False)
    assert pager.answered(0, 2, env(100, 250)) == ([], True)


def test_a_short_page_is_not_the_end_while_the_total_is_not_reached() -> None:
    pager = Pager(1, limit=100)
    assert pager.answered(0, 1, env(100, 200)) == ([(0, 2)], False)
    # The total grew meanwhile (a call ended): one more page.
    assert pager.answered(0, 2, env(100, 230)) == ([(0, 3)], False)
    assert pager.answered(0, 3, env(30, 230)) == ([], True)


def test_an_empty_page_ends_a_window_whose_total_is_not_reached() -> None:
    pager = Pager(1, limit=100)
    assert pager.answered(0, 1, env(100, 300)) == ([(0, 2), (0, 3)], False)
    assert pager.answered(0, 2, env(100, 300)) == ([], False)
    assert pager.answered(0, 3, env(0, 300)) == ([], True)


def test_without_totalrecord_pages_until_a_short_page() -> None:
    pager = Pager(2, limit=10)
    assert pager.answered(1, 1, env(0, 0)) == ([], True)
    assert pager.answered(0, 1, env(10, None)) == ([(0, 2)], False)
    assert pager.answered(0, 2, env(4, None)) == ([], True)
