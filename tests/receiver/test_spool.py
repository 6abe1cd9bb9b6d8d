"""The spool's file format and directory ownership, without a database."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from receiver.batcher import Unstorable
from receiver.spool import MAGIC, Spool, SpoolFull, decode, encode, read_segment
from store.dead_letters import DeadLetter
from store.ingest import Delivery

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def delivery(i: int, **payload: object) -> Delivery:
    return Delivery("default", f"call-{i}", "webhook", {"call_id": f"call-{i}", "n": i, **payload}, T0, bytes([i % 256]) * 32)


def letter() -> DeadLetter:
    return DeadLetter(received_at=T0, tenant_id="default", reason="invalid_json", detail="x",
                      body=b"\xff\x00not json", body_bytes=10, content_type="text/plain", remote_addr="127.0.0.1")


def test_records_round_trip() -> None:
    for item in (delivery(1, nested={"a": [1, 2.5, None, "é\u0000"]}), letter()):
        assert decode(encode(item)) == item


async def test_append_is_durable_and_readable(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10_000_000)
    spool.open()
    try:
        assert await spool.append([delivery(1), delivery(2)]) == [None, None]
        assert await spool.append([letter()]) == [None]
        assert spool.depth == 3 and spool.status()["depth"] == 3
        [seg] = list(spool.own.path.glob("*.seg"))  # type: ignore[union-attr]
        assert seg.read_bytes().startswith(MAGIC)
        records = read_segment(seg).records
        assert [decode(r) for r in records] == [delivery(1), delivery(2), letter()]
    finally:
        spool.close()
    # Closed with events still in it: the directory stays, for adoption.
    assert list((tmp_path / "spool").glob("*/*.seg"))


async def test_torn_last_record_is_ignored_at_every_cut(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10_000_000)
    spool.open()
    await spool.append([delivery(1)])
    await spool.append([delivery(2)])
    [seg] = list(spool.own.path.glob("*.seg"))  # type: ignore[union-attr]
    spool.close()
    whole = seg.read_bytes()
    first_end = len(whole) - len(encode(delivery(2))) - 8
    # A crash can stop a write after any byte: the first record always survives,
    # the second only when complete, and nothing raises.
    for cut in range(len(whole) + 1):
        seg.write_bytes(whole[:cut])
        contents = read_segment(seg)
        expected = 0 if cut < first_end else 1 if cut < len(whole) else 2
        assert len(contents.records) == expected, cut
        good_end = {0: len(MAGIC) if cut >= len(MAGIC) else 0, 1: first_end, 2: len(whole)}[expected]
        assert contents.torn_bytes == cut - good_end, cut


async def test_corrupted_record_stops_reading(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10_000_000)
    spool.open()
    await spool.append([delivery(1), delivery(2)])
    [seg] = list(spool.own.path.glob("*.seg"))  # type: ignore[union-attr]
    spool.close()
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last record's payload
    seg.write_bytes(bytes(data))
    contents = read_segment(seg)
    assert [decode(r) for r in contents.records] == [delivery(1)] and contents.torn_bytes > 0
    data[10] = 0xFF  # an absurd length in the first header
    seg.write_bytes(bytes(data))
    assert read_segment(seg).records == []


async def test_size_cap(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 2048)
    spool.open()
    try:
        accepted = 0
        with pytest.raises(SpoolFull):
            for i in range(100):
                await spool.append([delivery(i, pad="x" * 200)])
                accepted += 1
        assert 0 < accepted < 10 and spool.depth == accepted
    finally:
        spool.close()


async def test_unencodable_item_is_refused_alone(tmp_path: Path) -> None:
    deep: object = []
    for _ in range(300):  # orjson writes at most 254 levels
        deep = [deep]
    spool = Spool(tmp_path / "spool", 10_000_000)
    spool.open()
    try:
        results = await spool.append([delivery(1), delivery(2, deep=deep), delivery(3)])
        assert results[0] is None and isinstance(results[1], Unstorable) and results[2] is None
        assert spool.depth == 2
    finally:
        spool.close()


async def test_live_directories_are_not_adopted_dead_ones_are(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    alive, dead, adopter = Spool(root, 10_000_000), Spool(root, 10_000_000), Spool(root, 10_000_000)
    alive.open()
    dead.open()
    adopter.open()
    try:
        await alive.append([delivery(1)])
        await dead.append([delivery(2), delivery(3)])
        # The process dies: its lock goes with its file descriptors.
        dead._close_current()
        assert dead.own is not None
        os.close(dead.own.lock_fd)
        assert adopter.adopt_orphans() == 1
        assert adopter.depth == 2
        [(d, seg)] = adopter.sealed_segments()
        assert d.path == dead.own.path and seg.records == 2
        assert adopter.adopt_orphans() == 0  # already held
    finally:
        alive.close()
        adopter.close()
    # Both directories still hold events: kept for the next drainer.
    assert len(list(root.glob("*/*.seg"))) == 2


async def test_empty_directory_is_removed_on_close(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10_000_000)
    spool.open()
    spool.close()
    assert list((tmp_path / "spool").iterdir()) == []
