"""How a raw event's body is stored: the exact bytes received, compressed.

PostgreSQL compresses a value only when its row is over about 2 KB, and a
typical Alohub body is ~480 bytes of JSON, so `raw_events.body` (bytea) holds
what `pack()` returns:

    one version byte | data

- version 0: data is the body itself (used when compression would not make
  it smaller, and by SQL-only writers: `'\\x00'::bytea || convert_to(json, 'UTF8')`);
- version 1: data is raw deflate (zlib, wbits -15) with the preset dictionary
  `ZDICT_V1`, built from Alohub's field names and common values. Bodies share
  most of their text with it: a ~450-byte body packs to ~110 bytes (zlib
  without the dictionary: ~280).

A version's dictionary never changes once released (stored rows depend on it;
a test pins its SHA-256). A better dictionary is a new version byte, and
`unpack()` keeps reading every older one. `unpack()` of an unknown version or
of damaged data raises `RawBodyError`.
"""

from __future__ import annotations

import zlib

# Least frequent first: deflate finds the nearest match, and the end of the
# dictionary is nearest to the body. In order: the webhook's keys as JSON with
# spaces and status values not seen in samples; the history API's
# (searchCallV2) records; the webhook's mid-call event; its final events, the
# most frequent. Never edit: write ZDICT_V2 (and a version byte) instead.
ZDICT_V1 = (
    b'{"call_id": "", "call_status": "", "direction": "", "caller_number": "", "destination_number": "", '
    b'"starttime": "", "answertime": "", "endtime": "", "hangup_by": "", "hotline": "", "total_duration": "", '
    b'"holding_duration": "", "recording_url": "", "objectId": 1, "transactionID": "", "userName": "", '
    b'"eventType": "call"}'
    b'"cancelled","failed","busy","no answer","NO ANSWER","BUSY","FAILED","MISSED","ANSWERED","ringing",'
    b'"RINGING","system"'
    b'{"call_id":"2026","source":"ipcc","direction":"OUTBOUND","call_status":"answered","starttime":"2026-'
    b'","answertime":"","endtime":"","hangup_by":"agent","hotline":"","caller_number":"0",'
    b'"destination_number":"8","agent":"","transactionId":"","total_duration":"","holding_duration":"0",'
    b'"recording_url":"/var/spool/","_recording_path":"'
    b'{"call_id":"2026","source":"ipcc","direction":"INBOUND","call_status":"missed","starttime":"2026-'
    b'","answertime":"","endtime":"2026-","hangup_by":"customer","hotline":"1900","caller_number":"09",'
    b'"destination_number":"80","agent":"","transactionId":"","total_duration":"","holding_duration":"0",'
    b'"recording_url":""}'
    b'{"call_id":"2026","call_status":"answered","direction":"outbound","caller_number":"03",'
    b'"destination_number":"8","starttime":"2026-","answertime":"2026-","endtime":"","hangup_by":"",'
    b'"hotline":"","total_duration":"","holding_duration":"","recording_url":"","objectId":1,'
    b'"transactionID":"TRANS_","userName":"","eventType":"call"}'
    b'{"call_id":"2026","call_status":"missed","direction":"inbound","caller_number":"09",'
    b'"destination_number":"80","starttime":"2026-","answertime":"","endtime":"2026-","hangup_by":"customer",'
    b'"hotline":"1900","total_duration":"","holding_duration":"0","recording_url":"","objectId":1,'
    b'"transactionID":"","userName":"","eventType":"call"}'
    b'{"call_id":"2026","call_status":"answered","direction":"inbound","caller_number":"09",'
    b'"destination_number":"80","starttime":"2026-","answertime":"2026-","endtime":"2026-",'
    b'"hangup_by":"customer","hotline":"1900","total_duration":"","holding_duration":"0",'
    b'"recording_url":"https://app.alohub.vn:9909/IPCCMedia/MP3Export.do?url=/var/spool/asterisk/monitor/2026/'
    b'.mp3&source=ipcc","objectId":1,"transactionID":"","userName":".nguyen","eventType":"call"}'
)

STORED = 0
DEFLATE_V1 = 1
_DICTS: dict[int, bytes] = {DEFLATE_V1: ZDICT_V1}


class RawBodyError(ValueError):
    """A stored body that cannot be read back (unknown version, damaged data)."""


def pack(body: bytes) -> bytes:
    """The stored form of `body`: the current version, or version 0 when compression does not shrink it."""
    # Level 6: level 9 gives the same sizes on these bodies; most of the ~20 µs a
    # body costs is setting the dictionary up.
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, ZDICT_V1)
    packed = c.compress(body) + c.flush()
    if len(packed) < len(body):
        return bytes((DEFLATE_V1,)) + packed
    return bytes((STORED,)) + body


def unpack(data: bytes) -> bytes:
    """The body exactly as received, from what `pack()` returned."""
    data = bytes(data)
    if not data:
        raise RawBodyError("empty raw body: no version byte")
    version = data[0]
    if version == STORED:
        return data[1:]
    zdict = _DICTS.get(version)
    if zdict is None:
        raise RawBodyError(f"unknown raw body version {version} (this callstore reads 0-{max(_DICTS)})")
    d = zlib.decompressobj(-15, zdict)
    try:
        body = d.decompress(data[1:]) + d.flush()
    except zlib.error as e:
        raise RawBodyError(f"damaged raw body (version {version}): {e}") from None
    if not d.eof or d.unused_data:
        raise RawBodyError(f"damaged raw body (version {version}): truncated or trailing data")
    return body
