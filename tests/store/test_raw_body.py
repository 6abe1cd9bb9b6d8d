"""Raw bodies are stored packed: exactly what was received comes back, realistic bodies
shrink to a fraction, and the released format never changes."""

from __future__ import annotations

import hashlib
import json
import random
import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import raw_body
from store.ingest import Delivery
from tests.store.raw_mix import deliveries, utc

# Version 1's dictionary is part of every stored body packed with it: it can never change.
# A better dictionary is a new version byte (and unpack() keeps reading this one).
ZDICT_V1_SHA256 = "53ccc790b7dc8e957a4c83a8e45ef98d0ccc378247beee6e8c41d7c684e8b10e"


def test_version_1_dictionary_never_changes() -> None:
    assert hashlib.sha256(raw_body.ZDICT_V1).hexdigest() == ZDICT_V1_SHA256


@given(st.binary(max_size=4096))
@settings(max_examples=300)
def test_any_bytes_come_back_exactly(body: bytes) -> None:
    packed = raw_body.pack(body)
    assert packed[0] in (raw_body.STORED, raw_body.DEFLATE_V1)
    assert len(packed) <= len(body) + 1
    assert raw_body.unpack(packed) == body


@given(st.dictionaries(st.sampled_from(["call_id", "userName", "hotline", "note", "x"]),
                       st.one_of(st.text(), st.integers(-2**63, 2**63 - 1), st.none()), max_size=6))
def test_json_bodies_come_back_exactly(value: dict) -> None:  # type: ignore[type-arg]
    """Bodies like the webhook's, in the dictionary's words or not."""
    body = orjson.dumps(value)
    assert raw_body.unpack(raw_body.pack(body)) == body


def test_realistic_bodies_shrink_to_under_a_third() -> None:
    mix = deliveries(Delivery, "t", 500, seed=11, first=utc(2026, 10, 1), days=30)
    bodies = [orjson.dumps(d.payload) for d in mix]
    packed = [raw_body.pack(b) for b in bodies]
    assert all(p[0] == raw_body.DEFLATE_V1 for p in packed)
    assert [raw_body.unpack(p) for p in packed] == bodies
    ratio = sum(map(len, packed)) / sum(map(len, bodies))
    assert ratio < 0.33, ratio
    # The dictionary is what makes the difference: zlib alone keeps well over half.
    plain = sum(len(zlib.compress(b, 9)) for b in bodies) / sum(map(len, bodies))
    assert ratio < plain / 2, (ratio, plain)
    # JSON with spaces after separators (as other senders write it) shrinks too.
    spaced = [json.dumps(d.payload).encode() for d in mix[:100]]
    assert sum(len(raw_body.pack(b)) for b in spaced) / sum(map(len, spaced)) < 0.35


def test_incompressible_bodies_are_stored_as_they_are() -> None:
    body = random.Random(1).randbytes(512)
    packed = raw_body.pack(body)
    assert packed == b"\x00" + body
    assert raw_body.unpack(b"\x00" + b'{"a": 1}') == b'{"a": 1}'  # as SQL-only writers store it


@pytest.mark.parametrize("stored, message", [
    (b"", "no version byte"),
    (b"\x07abc", "unknown raw body version 7"),
    (b"\x01\xff\xff\xff", "damaged raw body"),
    (raw_body.pack(b'{"call_id": "C1", "call_status": "answered"}')[:-2], "damaged raw body"),
    (raw_body.pack(b'{"call_id": "C1", "call_status": "answered"}') + b"x", "damaged raw body"),
])
def test_unreadable_bodies_raise_a_clear_error(stored: bytes, message: str) -> None:
    with pytest.raises(raw_body.RawBodyError, match=message):
        raw_body.unpack(stored)
