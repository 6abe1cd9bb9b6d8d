"""The fake's campaign routes, as Alohub's campaign API documents them.

- `GET /v1/campaigns/{id}/contact-lists`: every list of the campaign.
- `GET /v1/campaigns/{id}/contact-lists/{listId}/contacts?page=&size=`: a list's
  contacts, `page` from 0, `size` default 20 and capped at the fake's limit.
- `POST /v1/campaigns/{id}/contacts`: add one contact (to `listId`, else the
  first list, else a new "Default List").
- `POST /v1/campaigns/{id}/contacts/bulk` and `GET .../contacts/import/{job_id}`:
  an asynchronous import that finishes after a few polls; duplicate phone
  numbers are skipped and counted, not errors.
- `DELETE /v1/campaigns/{id}/contacts/{contactId}`: only while `processStatus`
  is 0 (pending); otherwise 400 `INVALID_STATE`.

Every route sits behind the gateway's key check and rate limits (`api._serve`).
Contacts' `processStatus` moves as the fake's outbound calls dial them
(`dial`): 0 pending, 1 in call, 2 processed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

from sync.fake.history import AGENTS, FakeCall
from sync.fake.responses import JSONResponse, envelope, failure

DEFAULT_CONTACT_PAGE_SIZE = 20
#: Polls of an import job before it is done: pending, processing, then done.
IMPORT_POLLS = 3


@dataclass
class FakeContact:
    contact_id: int
    customer_id: int
    phone_number: str
    name: str | None = None
    process_status: int = 0
    call_status: str | None = None

    def to_record(self) -> dict[str, object]:
        return {
            "contactId": self.contact_id,
            "customerId": self.customer_id,
            "phoneNumber": self.phone_number,
            "name": self.name,
            "processStatus": self.process_status,
            "callStatus": self.call_status,
        }


@dataclass
class FakeList:
    list_id: int
    name: str
    contacts: list[FakeContact] = field(default_factory=list)

    def to_record(self) -> dict[str, object]:
        return {"listId": self.list_id, "listName": self.name, "contactCount": len(self.contacts)}


@dataclass
class ImportJob:
    job_id: int
    list_id: int
    rows: list[tuple[str, str | None]]
    polls: int = 0
    processed: int = 0
    duplicates: int = 0
    failed: int = 0
    status: str = "pending"


@dataclass
class FakeCampaign:
    campaign_id: int
    name: str
    lists: list[FakeList] = field(default_factory=list)

    def contacts(self) -> Iterator[FakeContact]:
        for lst in self.lists:
            yield from lst.contacts

    def find(self, contact_id: int) -> tuple[FakeList, FakeContact] | None:
        for lst in self.lists:
            for c in lst.contacts:
                if c.contact_id == contact_id:
                    return lst, c
        return None


@dataclass
class Campaigns:
    """Every campaign of one fake, with the id counters the routes hand out."""

    campaigns: dict[int, FakeCampaign] = field(default_factory=dict)
    jobs: dict[int, ImportJob] = field(default_factory=dict)
    next_list_id: int = 501
    next_contact_id: int = 88001
    next_customer_id: int = 55001
    next_job_id: int = 1

    def new_list(self, campaign: FakeCampaign, name: str) -> FakeList:
        lst = FakeList(self.next_list_id, name)
        self.next_list_id += 1
        campaign.lists.append(lst)
        return lst

    def add_contact(self, lst: FakeList, phone: str, name: str | None) -> FakeContact:
        contact = FakeContact(self.next_contact_id, self.next_customer_id, phone, name)
        self.next_contact_id += 1
        self.next_customer_id += 1
        lst.contacts.append(contact)
        return contact

    def advance(self, job: ImportJob, campaign: FakeCampaign) -> None:
        """One poll of an import job: it is done after `IMPORT_POLLS` polls."""
        job.polls += 1
        if job.status in ("done", "failed"):
            return
        if job.polls < IMPORT_POLLS:
            job.status = "processing" if job.polls > 1 else "pending"
            job.processed = len(job.rows) * (job.polls - 1) // IMPORT_POLLS
            return
        lst = next(x for x in campaign.lists if x.list_id == job.list_id)
        seen = {c.phone_number for c in campaign.contacts()}
        for phone, name in job.rows:
            if phone in seen:
                job.duplicates += 1
                continue
            seen.add(phone)
            self.add_contact(lst, phone, name)
        job.processed = len(job.rows)
        job.status = "done"


def generate_campaigns(rng: random.Random, phones: list[str], *, campaigns: int = 2,
                       lists_per_campaign: int = 2) -> Campaigns:
    """Campaigns whose contacts are `phones` (customer numbers, national form), split into lists."""
    state = Campaigns()
    pool = list(phones)
    rng.shuffle(pool)
    lists: list[FakeList] = []
    for c in range(campaigns):
        camp = FakeCampaign(1042 + c, f"Chiến dịch {c + 1}")
        state.campaigns[camp.campaign_id] = camp
        lists.extend(state.new_list(camp, f"Danh sach {c + 1}.{n + 1}") for n in range(lists_per_campaign))
    for i, phone in enumerate(pool):
        state.add_contact(lists[i % len(lists)], phone, None)
    return state


def dial(data: Campaigns, rng: random.Random, start: datetime, end: datetime, tz: str, *,
         in_progress: float = 0.05) -> list[FakeCall]:
    """Outbound calls that dial the campaigns' contacts, and the contacts' statuses they leave.

    Each contact gets 0 to 3 attempts (some none at all) between `start` and
    `end`, a few minutes to hours apart; the customer's number is the
    contact's, in `caller_number` as Alohub puts it in both directions. A
    contact whose last attempt is still going is `processStatus` 1, one with
    ended attempts 2 (processed), one never dialled stays 0. `callStatus` is the
    last attempt's `call_status`.
    """
    zone = ZoneInfo(tz)
    first = start if start.tzinfo else start.replace(tzinfo=zone)
    last = end if end.tzinfo else end.replace(tzinfo=zone)
    span = int((last - first).total_seconds())
    calls: list[FakeCall] = []
    for camp in data.campaigns.values():
        for contact in camp.contacts():
            attempts = rng.choices((0, 1, 2, 3), weights=(3, 4, 2, 1))[0]
            at = first + timedelta(seconds=rng.randrange(max(1, span // 2)))
            for n in range(attempts):
                if at >= last:
                    break
                final = n == attempts - 1 or at + timedelta(hours=6) >= last
                call = _attempt(rng, camp.campaign_id, contact, at, zone,
                                ongoing=final and rng.random() < in_progress)
                calls.append(call)
                contact.process_status = 1 if call.endtime == "" else 2
                contact.call_status = call.call_status
                if final:
                    break
                at += timedelta(minutes=rng.randint(10, 360))
    calls.sort(key=lambda c: (c.starttime, c.call_id))
    return calls


def _attempt(rng: random.Random, campaign_id: int, contact: FakeContact, started: datetime, zone: ZoneInfo, *,
             ongoing: bool) -> FakeCall:
    r = rng.random()
    answered = r < 0.55
    status = "answered" if answered else ("missed" if r < 0.9 else "busy")
    ring = rng.randint(3, 30) if answered else rng.randint(5, 45)
    talk = max(5, min(1800, int(rng.expovariate(1 / 150)))) if answered else 0
    if ongoing and not answered:
        status = "ringing"
    agent, extension = rng.choice(AGENTS)
    answer_at = started + timedelta(seconds=ring)
    end_at = answer_at + timedelta(seconds=talk)

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).replace(tzinfo=None).isoformat(" ", "seconds")

    starttime = local(started)
    return FakeCall(
        call_id=f"{starttime.replace('-', '').replace(' ', '').replace(':', '')}-C{campaign_id}-{contact.contact_id}",
        source="ipcc",
        direction="OUTBOUND",
        call_status=status,
        starttime=starttime,
        answertime=local(answer_at) if answered else "",
        endtime="" if ongoing else local(end_at),
        hangup_by="" if ongoing else ("customer" if rng.random() < 0.5 else "agent"),
        hotline="",
        caller_number=contact.phone_number,
        destination_number=extension,
        agent=agent,
        transactionId="",
        total_duration="" if ongoing else str(int((end_at - started).total_seconds())),
        holding_duration="" if ongoing else "0",
        recording_url="",
    )


class InvalidInput(ValueError):
    """A request the fake answers with 400 INVALID_INPUT."""


def _int_param(value: str | None, name: str, default: int, minimum: int) -> int:
    if value is None or value == "":
        return default
    if not value.strip().isdigit() or int(value) < minimum:
        raise InvalidInput(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _path_id(request: Request, name: str) -> int | None:
    raw = request.path_params.get(name, "")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def _not_found(what: str, headers: dict[str, str]) -> Response:
    return failure(404, "NOT_FOUND", f"{what} not found", headers)


def _ok(message: str, headers: dict[str, str], **extra: object) -> Response:
    return JSONResponse({"success": "1", "error_code": "SUCCESS", "error_message": message, **extra},
                        headers=headers)


async def _body(request: Request) -> dict[str, object]:
    import orjson

    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidInput("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    return body


def _phone(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or not any(ch.isdigit() for ch in value):
        raise InvalidInput("phoneNumber is required")
    return value.strip()


class Handlers:
    """The route bodies; each is called through the gateway's auth and rate limits."""

    def __init__(self, data: Campaigns, max_size: int) -> None:
        self.data = data
        self.max_size = max_size

    def _campaign(self, request: Request) -> FakeCampaign | None:
        cid = _path_id(request, "campaign_id")
        return self.data.campaigns.get(cid) if cid is not None else None

    async def lists(self, request: Request, headers: dict[str, str]) -> Response:
        camp = self._campaign(request)
        if camp is None:
            return _not_found("campaign", headers)
        return envelope([lst.to_record() for lst in camp.lists], len(camp.lists), headers, message=False)

    async def contacts(self, request: Request, headers: dict[str, str]) -> Response:
        camp = self._campaign(request)
        list_id = _path_id(request, "list_id")
        lst = next((x for x in camp.lists if x.list_id == list_id), None) if camp else None
        if lst is None:
            return _not_found("contact list", headers)
        try:
            page = _int_param(request.query_params.get("page"), "page", 0, 0)
            size = min(_int_param(request.query_params.get("size"), "size", DEFAULT_CONTACT_PAGE_SIZE, 1),
                       self.max_size)
        except InvalidInput as exc:
            return failure(400, "INVALID_INPUT", str(exc), headers)
        records = [c.to_record() for c in lst.contacts[page * size:(page + 1) * size]]
        return envelope(records, len(lst.contacts), headers, message=False)

    async def add(self, request: Request, headers: dict[str, str]) -> Response:
        camp = self._campaign(request)
        if camp is None:
            return _not_found("campaign", headers)
        try:
            body = await _body(request)
            phone = _phone(body.get("phoneNumber"))
            name = body.get("name")
            list_id = body.get("listId")
            if list_id is not None and (isinstance(list_id, bool) or not isinstance(list_id, int)):
                raise InvalidInput("listId must be a number")
        except InvalidInput as exc:
            return failure(400, "INVALID_INPUT", str(exc), headers)
        if list_id is not None:
            lst = next((x for x in camp.lists if x.list_id == list_id), None)
            if lst is None:
                return _not_found("contact list", headers)
        else:
            lst = camp.lists[0] if camp.lists else self.data.new_list(camp, "Default List")
        self.data.add_contact(lst, phone, name if isinstance(name, str) else None)
        return _ok(f"Contact added to list {lst.list_id}", headers)

    async def bulk(self, request: Request, headers: dict[str, str]) -> Response:
        camp = self._campaign(request)
        if camp is None:
            return _not_found("campaign", headers)
        try:
            body = await _body(request)
            contacts = body.get("contacts")
            if not isinstance(contacts, list) or not contacts:
                raise InvalidInput("contacts must be a list with at least one item")
            rows = []
            for item in contacts:
                if not isinstance(item, dict):
                    raise InvalidInput("each contact must be an object with phoneNumber")
                name = item.get("name")
                rows.append((_phone(item.get("phoneNumber")), name if isinstance(name, str) else None))
            list_name = body.get("listName")
        except InvalidInput as exc:
            return failure(400, "INVALID_INPUT", str(exc), headers)
        lst = self.data.new_list(camp, list_name if isinstance(list_name, str) and list_name
                                 else f"Import {self.data.next_job_id}")
        job = ImportJob(self.data.next_job_id, lst.list_id, rows)
        self.data.jobs[job.job_id] = job
        self.data.next_job_id += 1
        return _ok("Bulk import started", headers, job_id=job.job_id, total_rows=len(rows))

    async def job(self, request: Request, headers: dict[str, str]) -> Response:
        camp = self._campaign(request)
        job_id = _path_id(request, "job_id")
        job = self.data.jobs.get(job_id) if job_id is not None else None
        if camp is None or job is None or not any(x.list_id == job.list_id for x in camp.lists):
            return _not_found("import job", headers)
        self.data.advance(job, camp)
        return JSONResponse({"jobId": job.job_id, "status": job.status, "totalRows": len(job.rows),
                             "processedRows": job.processed, "failedRows": job.failed,
                             "duplicateRows": job.duplicates, "error": None}, headers=headers)

    async def delete(self, request: Request, headers: dict[str, str]) -> Response:
        camp = self._campaign(request)
        contact_id = _path_id(request, "contact_id")
        found = camp.find(contact_id) if camp is not None and contact_id is not None else None
        if found is None:
            return _not_found("contact", headers)
        lst, contact = found
        if contact.process_status != 0:
            return failure(400, "INVALID_STATE",
                           f"contact {contact.contact_id} has processStatus={contact.process_status}; "
                           "only pending contacts (0) can be deleted", headers)
        lst.contacts.remove(contact)
        return _ok("Contact deleted successfully", headers)
