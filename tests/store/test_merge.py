from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.merge import call_id_of, fold, normalize, parse_int, parse_time
from store.phone import canonical_phone

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")

SAMPLE = {
    "call_id": "20240113150030xxxxxx",
    "call_status": "answered",
    "direction": "outbound",
    "caller_number": "03899xxx",
    "destination_number": "888",
    "starttime": "2024-01-13 15:00:30",
    "answertime": "2024-01-13 15:00:35",
    "endtime": "2024-01-13 15:05:30",
    "hangup_by": "customer",
    "hotline": "",
    "total_duration": "300",
    "holding_duration": "0",
    "recording_url": "https://domain:port/IPCCMedia/MP3Export.do?url=file.mp3&source=ipcc",
    "objectId": 1,
    "transactionID": "TRANSID_1111",
    "userName": "adminxxx",
    "eventType": "call",
}
PARTIAL = {**SAMPLE, **{k: "" for k in ("endtime", "hangup_by", "hotline", "total_duration", "holding_duration", "recording_url")}}


def test_sample_event_normalised() -> None:
    ev = normalize(SAMPLE, "webhook", ZONE)
    v = ev.values
    assert v["direction"] == "outbound"
    assert v["started_at"] == datetime(2024, 1, 13, 8, 0, 30, tzinfo=timezone.utc)
    assert v["total_seconds"] == 300 and v["hold_seconds"] == 0
    assert v["transaction_id"] == "TRANSID_1111" and v["agent"] == "adminxxx"
    assert "hotline" not in v  # empty means absent
    assert ev.flags == ()
    assert ev.lifecycle == 2
    assert normalize(PARTIAL, "webhook", ZONE).lifecycle == 1


def test_history_record_spellings() -> None:
    ev = normalize(
        {"call_id": "x", "direction": "OUTBOUND", "agent": "a1", "transactionId": "T", "source": "ipcc"}, "history", ZONE
    )
    assert ev.values["direction"] == "outbound"
    assert ev.values["agent"] == "a1" and ev.values["transaction_id"] == "T"
    assert ev.values["history_source"] == "ipcc"


def test_bad_values_are_absent_and_flagged() -> None:
    ev = normalize({"call_id": "x", "starttime": "yesterday", "total_duration": "abc", "direction": "sideways",
                    "holding_duration": -4, "hangup_by": {"x": 1}}, "webhook", ZONE)
    assert set(ev.flags) == {"starttime", "total_duration", "direction", "holding_duration", "hangup_by"}
    assert ev.values == {}


def test_empty_never_overwrites_present() -> None:
    final = normalize(SAMPLE, "webhook", ZONE)
    partial = normalize(PARTIAL, "webhook", ZONE)
    row = fold([final, partial]).values
    assert row["recording_url"] == SAMPLE["recording_url"]
    assert row["ended_at"] is not None and row["hangup_by"] == "customer"


def test_history_wins_within_the_same_lifecycle() -> None:
    hook = normalize({**SAMPLE, "userName": "from-webhook"}, "webhook", ZONE)
    hist = normalize({**SAMPLE, "agent": "from-history", "userName": None}, "history", ZONE)
    assert fold([hook, hist]).values["agent"] == "from-history"
    assert fold([hist, hook]).values["agent"] == "from-history"


def test_later_lifecycle_wins() -> None:
    partial = normalize({**PARTIAL, "call_status": "ringing"}, "webhook", ZONE)
    final = normalize(SAMPLE, "webhook", ZONE)
    assert fold([final, partial]).values["call_status"] == "answered"


def test_scalars() -> None:
    assert call_id_of({"call_id": 123}) == "123"
    assert call_id_of({"call_id": " "}) is None
    assert call_id_of({"call_id": True}) is None
    assert parse_int("300") == 300 and parse_int("300.0") == 300 and parse_int("3e2") == 300
    assert parse_int("abc") is None and parse_int(1.5) is None and parse_int(True) is None
    assert parse_time("2024-01-13T15:00:30+07:00", ZONE) == datetime(2024, 1, 13, 8, 0, 30, tzinfo=timezone.utc)
    assert parse_time("2024-01-13T08:00:30Z", ZONE) == datetime(2024, 1, 13, 8, 0, 30, tzinfo=timezone.utc)
    assert parse_time(1705132830, ZONE) == datetime(2024, 1, 13, 8, 0, 30, tzinfo=timezone.utc)
    assert parse_time("2024-13-45 99:00:00", ZONE) is None


def test_phone_forms_compare_equal() -> None:
    forms = ["0912345678", "+84912345678", "84912345678", "091 234 5678", "091-234-5678", "0084912345678", "(091) 234.5678"]
    assert {canonical_phone(f) for f in forms} == {"+84912345678"}
    assert canonical_phone("888") == "888"
    assert canonical_phone("19001234") == "19001234"
    assert canonical_phone("") is None and canonical_phone("abc") is None


# --- the permutation property -------------------------------------------------

times = st.sampled_from(["", "2024-01-13 15:00:30", "2024-01-13 15:00:35", "2024-01-13 15:05:30", "bad", "2024-01-13T08:05:31Z"])
event = st.fixed_dictionaries(
    {
        "call_id": st.just("C1"),
        "call_status": st.sampled_from(["", "answered", "missed", "busy"]),
        "direction": st.sampled_from(["", "inbound", "OUTBOUND", "Inbound", "nonsense"]),
        "caller_number": st.sampled_from(["", "0912345678", "+84912345678", "0987654321"]),
        "hotline": st.sampled_from(["", "19001234", "02812345678"]),
        "starttime": times,
        "answertime": times,
        "endtime": times,
        "hangup_by": st.sampled_from(["", "customer", "agent", "system"]),
        "total_duration": st.sampled_from(["", "300", 300, "abc", "12.0"]),
        "holding_duration": st.sampled_from(["", "0", "5"]),
        "recording_url": st.sampled_from(["", "a/b.mp3", "https://h/IPCCMedia/MP3Export.do?url=a/b.mp3&source=ipcc"]),
    },
    optional={
        "transactionID": st.sampled_from(["", "T1", "T2"]),
        "transactionId": st.sampled_from(["", "T1", "T3"]),
        "userName": st.sampled_from(["", "u1", "u2"]),
        "agent": st.sampled_from(["", "u1", "u3"]),
    },
)
events = st.lists(st.tuples(event, st.sampled_from(["webhook", "history"])), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(events=events, data=st.data())
def test_any_permutation_and_duplication_gives_the_same_row(events, data) -> None:  # type: ignore[no-untyped-def]
    normalized = [normalize(p, s, ZONE) for p, s in events]
    reference = fold(normalized)
    shuffled = data.draw(st.permutations(normalized))
    dupes = data.draw(st.lists(st.sampled_from(normalized), max_size=6))
    again = fold([*shuffled, *dupes])
    assert again.values == reference.values
    assert again.flagged == reference.flagged


ANY_VALUE = st.one_of(
    st.text(max_size=30), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.text(alphabet=st.characters(whitelist_categories=("Nd", "No", "Nl")), max_size=25),
)
PAYLOAD_FIELDS = ["call_id", "call_status", "direction", "caller_number", "destination_number", "starttime",
                  "answertime", "endtime", "hangup_by", "hotline", "total_duration", "holding_duration",
                  "recording_url", "objectId", "transactionID", "transactionId", "userName", "agent"]


@settings(max_examples=2000, deadline=None)
@given(payload=st.dictionaries(st.sampled_from(PAYLOAD_FIELDS), ANY_VALUE),
       source=st.sampled_from(["webhook", "history"]))
def test_normalize_never_raises_whatever_the_values(payload, source) -> None:  # type: ignore[no-untyped-def]
    """A bad value is dropped and flagged, never an exception that would fail the whole batch."""
    fold([normalize(payload, source, ZONE)])


def test_digits_that_int_refuses_are_not_times() -> None:
    """Found by the property above: str.isdigit() accepts superscripts and other scripts' digits."""
    for raw in ("\u00b2", "\u1369", "\u0663\u0664", "9" * 5000):
        assert parse_time(raw, ZONE) is None
        assert normalize({"call_id": "x", "starttime": raw}, "webhook", ZONE).values.get("started_at") is None


# --- the same property through the database, batched any way ----------------

import uuid  # noqa: E402
from datetime import timezone as _tz  # noqa: E402

from sqlalchemy import text  # noqa: E402

from store.ingest import Delivery, ingest  # noqa: E402
from store.settings import TenantSettings  # noqa: E402

TENANTS = {"default": TenantSettings("default")}
ROW = "SELECT * FROM callstore.calls WHERE call_id = :c"
_SKIP = {"first_seen_at", "updated_at", "first_source", "call_id"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=events, data=st.data())
async def test_any_order_batching_and_duplication_in_the_database_gives_the_same_row(engine, events, data) -> None:  # type: ignore[no-untyped-def]
    when = datetime(2026, 11, 23, tzinfo=_tz.utc)
    reference = fold([normalize(p, s, ZONE) for p, s in events]).values
    shuffled = data.draw(st.permutations(events))
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=4))
    stream = [*shuffled, *dupes]
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=3)))
    call_id = f"C-{uuid.uuid4().hex}"  # each example its own call
    batches, start = [], 0
    for cut in [*cuts, len(stream)]:
        batches.append(stream[start:cut])
        start = cut
    for batch in batches:
        async with engine.begin() as conn:
            await ingest(conn, [Delivery("default", call_id, s, {**p, "call_id": call_id}, when) for p, s in batch], TENANTS)
    async with engine.connect() as conn:
        row = dict((await conn.execute(text(ROW), {"c": call_id})).one()._mapping)
    assert {k: row[k] for k in reference} == reference


async def test_same_payload_from_webhook_and_history_is_two_deliveries(engine) -> None:  # type: ignore[no-untyped-def]
    """Found by the property above: deduplicating across sources lost history's rank."""
    when = datetime(2026, 11, 23, tzinfo=_tz.utc)
    a = {"call_id": "C2", "endtime": "2024-01-13 15:00:30"}
    later = {"call_id": "C2", "endtime": "2024-01-13 15:00:35"}
    async with engine.begin() as conn:
        await ingest(conn, [Delivery("default", "C2", "webhook", a, when), Delivery("default", "C2", "history", a, when),
                            Delivery("default", "C2", "webhook", later, when)], TENANTS)
    async with engine.connect() as conn:
        row = (await conn.execute(text(ROW), {"c": "C2"})).one()._mapping
        raw = (await conn.execute(text("SELECT count(*) FROM callstore.raw_events WHERE call_id = 'C2'"))).scalar()
    assert raw == 3
    assert row["ended_at"] == datetime(2024, 1, 13, 8, 0, 30, tzinfo=_tz.utc)  # history's value wins
