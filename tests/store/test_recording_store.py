"""Storage keys and the local store: nothing can be written outside the root."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from store.recording_store import LocalRecordingStore, UnsafeKey, encode_segment, storage_key

ICT = ZoneInfo("Asia/Ho_Chi_Minh")
EVIL = ["../../etc/passwd", "..\\x", "a/b", "%2e%2e", "a\x00b", "x" * 5000, ".", "..", "", ".hidden",
        "/abs", "C:\\win", "é/ü", "\ud800", "~", "a%2Fb"]


def test_segments_are_safe_and_distinct() -> None:
    encoded = [encode_segment(v) for v in EVIL]
    assert len(set(encoded)) == len(EVIL)  # one-to-one: no two calls share a file
    for e in encoded:
        assert e and len(e) <= 130 and "/" not in e and "\\" not in e and "\x00" not in e
        assert not e.startswith(".") and ".." not in e
    assert encode_segment("20240113150030-ABCDEFGH-49278") == "20240113150030-ABCDEFGH-49278"
    assert encode_segment("a/b") != encode_segment("a_b") != encode_segment("a%2Fb")


def test_key_uses_tenant_local_date_and_call_id() -> None:
    started = datetime(2024, 1, 12, 20, 30, tzinfo=timezone.utc)  # 03:30 on the 13th in Ho Chi Minh City
    assert storage_key("default", "c1", started, ICT) == "default/2024/01/13/c1.mp3"
    assert storage_key("acme", "c1", started, ZoneInfo("Europe/Paris")) == "acme/2024/01/12/c1.mp3"
    assert storage_key("default", "c1", None, ICT) == "default/undated/c1.mp3"


async def test_evil_ids_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalRecordingStore(root)
    store.ensure_staging()
    started = datetime(2024, 1, 13, tzinfo=ICT)
    for i, call_id in enumerate(EVIL):
        src = store.staging_dir / f"{i}.part"
        src.write_bytes(b"ID3" + bytes([i]))
        key = storage_key("../tenant", call_id, started, ICT)
        await store.put_from_file(key, src)
        assert await store.size(key) == 4
    inside = {p.resolve() for p in root.rglob("*") if p.is_file()}
    assert len(inside) == len(EVIL)
    assert all(p.is_relative_to(root.resolve()) for p in inside)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # nothing beside the root


@pytest.mark.parametrize("key", ["../x.mp3", "a/../../x.mp3", "/etc/passwd", "a//b", "a/./b", "a\\..\\b",
                                 "a\x00b", "", ".partial/x", "t/.hidden"])
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(UnsafeKey):
        LocalRecordingStore(tmp_path).path(key)


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "t").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "t" / "2024")
    with pytest.raises(UnsafeKey):
        LocalRecordingStore(root).path("t/2024/01/01/c.mp3")
