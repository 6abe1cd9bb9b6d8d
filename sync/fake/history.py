"""The fake Alohub's ground truth: a deterministic call history.

Records use Alohub's own field names: the searchCallV2 record shape
(``direction`` upper case, ``agent``, ``transactionId``, ``source``, a bare
``recording_url`` path), and `webhook_events` turns a record into what the
webhook would have sent for the same call (``direction`` lower case,
``userName``, ``transactionID``, a full MP3Export URL).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

RECORD_FIELDS: tuple[str, ...] = (
    "call_id",
    "source",
    "direction",
    "call_status",
    "starttime",
    "answertime",
    "endtime",
    "hangup_by",
    "hotline",
    "caller_number",
    "destination_number",
    "agent",
    "transactionId",
    "total_duration",
    "holding_duration",
    "recording_url",
)

# Numbers dialled into the tenant that no queue claims: they exercise the
# "unassigned" attribution path.
STRAY_HOTLINES: tuple[str, ...] = ("19009999", "02838889999")

AGENTS: tuple[tuple[str, str], ...] = (
    ("lan.nguyen", "801"),
    ("minh.tran", "802"),
    ("hoa.le", "803"),
    ("tuan.pham", "804"),
    ("thu.hoang", "805"),
    ("duc.vu", "806"),
    ("mai.dang", "807"),
    ("khoa.bui", "808"),
    ("linh.do", "809"),
    ("nam.ngo", "810"),
    ("trang.duong", "811"),
    ("adminxxx", "888"),
)

MOBILE_PREFIXES: tuple[str, ...] = (
    "90", "91", "93", "94", "96", "97", "98", "32", "33", "34", "35", "36",
    "37", "38", "39", "70", "76", "77", "78", "79", "81", "82", "83", "84",
    "85", "86", "88", "89",
)


@dataclass(frozen=True)
class FakeQueue:
    """One inbound queue as `GET /v1/queues/inbound` lists it."""

    callin_id: int
    name: str
    callin_number: str | None
    strategy: int = 1
    music: str = "waiting.wav"
    time_wait: int = 120

    def to_record(self) -> dict[str, object]:
        return {
            "callinId": self.callin_id,
            "callinName": self.name,
            "strategy": self.strategy,
            "musicinQueue": self.music,
            "timeWait": str(self.time_wait),
            "agentSelector": None,
            "nguongRanhRoi": None,
            "callinNumber": self.callin_number,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> FakeQueue:
        """Read a queue from the Alohub record shape; raise ValueError if malformed."""
        callin_id = record.get("callinId")
        name = record.get("callinName", "")
        number = record.get("callinNumber")
        if not isinstance(callin_id, int) or isinstance(callin_id, bool):
            raise ValueError(f"callinId must be an integer, got {callin_id!r}")
        if not isinstance(name, str):
            raise ValueError(f"callinName must be a string, got {name!r}")
        if number is not None and not isinstance(number, str):
            raise ValueError(f"callinNumber must be a string or null, got {number!r}")
        strategy = record.get("strategy", 1)
        music = record.get("musicinQueue", "waiting.wav")
        time_wait = record.get("timeWait", "120")
        if not isinstance(strategy, int) or not isinstance(music, str):
            raise ValueError("strategy must be an integer and musicinQueue a string")
        try:
            wait = int(str(time_wait))
        except ValueError:
            raise ValueError(f"timeWait must be a number, got {time_wait!r}") from None
        return cls(callin_id, name, number, strategy, music, wait)


DEFAULT_QUEUES: tuple[FakeQueue, ...] = (
    FakeQueue(1001226, "Sales", "19001001"),
    FakeQueue(1001227, "Support", "19001002"),
    FakeQueue(1001228, "Billing", "02873001234"),
    FakeQueue(1001229, "VIP", "0909000111", strategy=2, time_wait=60),
    FakeQueue(1001230, "test", None),
)


@dataclass(frozen=True)
class FakeCall:
    """One call as Alohub's call-history API (searchCallV2) returns it."""

    call_id: str
    source: str
    direction: str
    call_status: str
    starttime: str
    answertime: str
    endtime: str
    hangup_by: str
    hotline: str
    caller_number: str
    destination_number: str
    agent: str
    transactionId: str  # noqa: N815 - Alohub's spelling
    total_duration: str
    holding_duration: str
    recording_url: str

    @property
    def answered(self) -> bool:
        return self.answertime != ""

    @property
    def ended(self) -> bool:
        return self.endtime != ""

    def as_record(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in RECORD_FIELDS}

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> FakeCall:
        """Build from a record; absent fields become "" and values become strings."""
        values = {name: record.get(name, "") for name in RECORD_FIELDS}
        return cls(**{name: "" if v is None else str(v) for name, v in values.items()})


def recording_link(media_base: str, path: str) -> str:
    """The full MP3Export URL the webhook sends for a bare recording path."""
    return f"{media_base.rstrip('/')}/IPCCMedia/MP3Export.do?url={quote(path, safe='/')}&source=ipcc"


def generate_calls(
    n: int,
    *,
    seed: int,
    start: datetime,
    end: datetime,
    tz: str = DEFAULT_TZ,
    queues: Sequence[FakeQueue] | None = None,
    in_progress: float = 0.0,
    curve: str = "diurnal",
    now: datetime | None = None,
    live: int = 0,
) -> list[FakeCall]:
    """`n` calls starting in [start, end), sorted by (starttime, call_id).

    The same arguments always give the same calls. Naive `start`/`end` are
    read in `tz`; record times are naive local times in `tz`. `in_progress`
    is the probability that a call has not ended yet.

    `curve` spreads start times: ``diurnal`` (a contact center's day: busy
    8-11 and 14-17 local, quiet at night, see `HOURLY_WEIGHT`) or ``flat``.
    With `now`, a call not over by then is in progress (ringing if not yet
    answered), and `live` more calls, started in the 5 minutes before `now`,
    are still running: every other one waits in a queue, the rest talk.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    zone = ZoneInfo(tz)
    first = start if start.tzinfo else start.replace(tzinfo=zone)
    last = end if end.tzinfo else end.replace(tzinfo=zone)
    span = int((last - first).total_seconds())
    if span <= 0 and n > 0:
        raise ValueError(f"end ({end}) must be after start ({start})")
    if curve not in CURVES:
        raise ValueError(f"curve must be one of {', '.join(CURVES)}, got {curve!r}")
    if live < 0 or (live and now is None):
        raise ValueError("live needs now and must be >= 0")
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=zone)
    rng = random.Random(seed)
    catalogue = list(DEFAULT_QUEUES if queues is None else queues)
    builder = _CallBuilder(rng, zone, catalogue, customers=max(50, n // 3))
    offsets = sorted(_offsets(rng, n, first, span, zone, curve)) if n else []
    calls = [builder.build(first + timedelta(seconds=o), in_progress, now) for o in offsets]
    if now is not None:
        calls += [builder.build_live(now, waiting=i % 2 == 0) for i in range(live)]
    calls.sort(key=lambda c: (c.starttime, c.call_id))
    return calls


CURVES = ("diurnal", "flat")

#: Relative call volume per local hour (0-23): a Vietnamese contact center's
#: day, with peaks 8-11 and 14-17, a lunch dip and a quiet night.
HOURLY_WEIGHT: tuple[float, ...] = (
    0.04, 0.03, 0.03, 0.03, 0.04, 0.06, 0.15, 0.45, 1.0, 1.0, 1.0, 0.7,
    0.4, 0.6, 1.0, 1.0, 1.0, 0.6, 0.35, 0.25, 0.18, 0.12, 0.08, 0.05,
)


def _offsets(
    rng: random.Random, n: int, first: datetime, span: int, zone: ZoneInfo, curve: str
) -> list[int]:
    """`n` start offsets (seconds after `first`) drawn along `curve` by rejection."""
    if curve == "flat":
        return [rng.randrange(span) for _ in range(n)]
    offsets: list[int] = []
    while len(offsets) < n:
        o = rng.randrange(span)
        # The weights are at least 0.03, so this ends even for a window at night.
        if rng.random() < HOURLY_WEIGHT[(first + timedelta(seconds=o)).astimezone(zone).hour]:
            offsets.append(o)
    return offsets


class _CallBuilder:
    def __init__(self, rng: random.Random, zone: ZoneInfo, queues: list[FakeQueue], customers: int) -> None:
        self.rng = rng
        self.zone = zone
        self.hotlines = [q.callin_number for q in queues if q.callin_number]
        self.customers = [
            rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10_000_000):07d}" for _ in range(customers)
        ]
        self.seen_ids: set[str] = set()

    def build(self, started: datetime, in_progress: float, now: datetime | None = None) -> FakeCall:
        rng = self.rng
        inbound = rng.random() < 0.70
        status, hangup_by, wait, answered = self._inbound_outcome() if inbound else self._outbound_outcome()
        talk = max(3, min(3600, int(rng.expovariate(1 / 180)))) if answered else 0
        ongoing = rng.random() < in_progress
        answer_at = started + timedelta(seconds=wait)
        end_at = answer_at + timedelta(seconds=talk)
        if now is not None and end_at > now:
            # Not over at `now`: still talking, or still ringing if not answered yet.
            ongoing = True
            answered = answered and answer_at <= now
        agent, extension = rng.choice(AGENTS)
        if inbound and not answered:
            agent, extension = "", ""
        if ongoing and not answered:
            status, hangup_by = "ringing", ""
        starttime = self._local(started)
        call_id = self._call_id(starttime)
        holding = rng.randint(1, max(1, min(120, talk // 3))) if answered and rng.random() < 0.2 else 0
        recorded = answered and not ongoing and rng.random() < 0.95
        return FakeCall(
            call_id=call_id,
            source="ipcc",
            direction="INBOUND" if inbound else "OUTBOUND",
            call_status=status,
            starttime=starttime,
            answertime=self._local(answer_at) if answered else "",
            endtime="" if ongoing else self._local(end_at),
            hangup_by="" if ongoing else hangup_by,
            hotline=self._hotline(inbound),
            caller_number=self._customer_number(),
            destination_number=extension,
            agent=agent,
            transactionId="" if inbound or rng.random() < 0.4 else f"TRANS_{rng.getrandbits(40):010X}",
            total_duration="" if ongoing else str(int((end_at - started).total_seconds())),
            holding_duration="" if ongoing else str(holding),
            recording_url=f"{starttime[:10].replace('-', '/')}/{call_id}.mp3" if recorded else "",
        )

    def build_live(self, now: datetime, *, waiting: bool) -> FakeCall:
        """An inbound call to a queue, started in the 5 minutes before `now` and still running."""
        rng = self.rng
        started = now - timedelta(seconds=rng.randint(5, 300))
        starttime = self._local(started)
        call_id = self._call_id(starttime)
        agent, extension = ("", "") if waiting else rng.choice(AGENTS)
        answered_after = rng.randint(0, int((now - started).total_seconds()))
        return FakeCall(
            call_id=call_id,
            source="ipcc",
            direction="INBOUND",
            call_status="ringing" if waiting else "answered",
            starttime=starttime,
            answertime="" if waiting else self._local(started + timedelta(seconds=answered_after)),
            endtime="",
            hangup_by="",
            hotline=rng.choice(self.hotlines) if self.hotlines else "",
            caller_number=self._customer_number(),
            destination_number=extension,
            agent=agent,
            transactionId="",
            total_duration="",
            holding_duration="",
            recording_url="",
        )

    def _inbound_outcome(self) -> tuple[str, str, int, bool]:
        rng = self.rng
        r = rng.random()
        if r < 0.15:
            short = rng.random() < 0.35
            wait = rng.randint(0, 4) if short else self._wait(minimum=5)
            return "missed", "customer", wait, False
        if r < 0.21:
            return "missed", "system", rng.choice((30, 60, 120, rng.randint(20, 120))), False
        if r < 0.23:
            return "busy", "system", rng.randint(0, 2), False
        if r < 0.24:
            return "missed", "agent", rng.randint(5, 30), False
        hangup = "customer" if rng.random() < 0.55 else ("agent" if rng.random() < 0.96 else "system")
        return "answered", hangup, self._wait(minimum=0), True

    def _outbound_outcome(self) -> tuple[str, str, int, bool]:
        rng = self.rng
        r = rng.random()
        if r < 0.60:
            return "answered", "customer" if rng.random() < 0.5 else "agent", rng.randint(3, 30), True
        if r < 0.90:
            return "missed", "system" if rng.random() < 0.7 else "agent", rng.randint(10, 45), False
        return "busy", "system", rng.randint(0, 3), False

    def _wait(self, minimum: int) -> int:
        """Seconds before answer or hang-up, weighted onto the 5 s and 20 s thresholds."""
        rng = self.rng
        r = rng.random()
        if r < 0.08:
            wait = 5
        elif r < 0.16:
            wait = 20
        elif r < 0.22:
            wait = rng.choice((4, 6, 19, 21))
        else:
            wait = min(120, int(rng.expovariate(1 / 15)))
        return max(minimum, wait)

    def _hotline(self, inbound: bool) -> str:
        r = self.rng.random()
        if inbound:
            if r < 0.85 and self.hotlines:
                return self.rng.choice(self.hotlines)
            return self.rng.choice(STRAY_HOTLINES) if r < 0.93 else ""
        return self.rng.choice(self.hotlines) if r < 0.5 and self.hotlines else ""

    def _customer_number(self) -> str:
        subscriber = self.rng.choice(self.customers)
        r = self.rng.random()
        if r < 0.85:
            return "0" + subscriber
        return ("84" if r < 0.95 else "+84") + subscriber

    def _call_id(self, starttime: str) -> str:
        stamp = starttime.replace("-", "").replace(" ", "").replace(":", "")
        while True:
            tag = "".join(self.rng.choices(LETTERS, k=8))
            call_id = f"{stamp}-{tag}-{self.rng.randint(10000, 99999)}"
            if call_id not in self.seen_ids:
                self.seen_ids.add(call_id)
                return call_id

    def _local(self, moment: datetime) -> str:
        # isoformat is much faster than strftime and gives the same TIME_FORMAT text.
        return moment.astimezone(self.zone).replace(tzinfo=None).isoformat(" ", "seconds")


def webhook_events(call: FakeCall, media_base: str) -> list[dict[str, object]]:
    """The webhook deliveries Alohub would send for `call`, in order.

    An answered call first yields a mid-call event (status ``answered``, end
    fields empty), then its final event; an unanswered call yields only its
    final event. A call still in progress yields only what has happened so far.
    """
    final: dict[str, object] = {
        "call_id": call.call_id,
        "call_status": call.call_status,
        "direction": call.direction.lower(),
        "caller_number": call.caller_number,
        "destination_number": call.destination_number,
        "starttime": call.starttime,
        "answertime": call.answertime,
        "endtime": call.endtime,
        "hangup_by": call.hangup_by,
        "hotline": call.hotline,
        "total_duration": call.total_duration,
        "holding_duration": call.holding_duration,
        "recording_url": recording_link(media_base, call.recording_url) if call.recording_url else "",
        "objectId": 1,
        "transactionID": call.transactionId,
        "userName": call.agent,
        "eventType": "call",
    }
    if not call.answered:
        return [final]
    partial = dict(final)
    partial.update(
        call_status="answered",
        endtime="",
        hangup_by="",
        total_duration="",
        holding_duration="",
        recording_url="",
    )
    return [partial, final] if call.ended else [partial]
