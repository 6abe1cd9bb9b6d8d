"""Every recording is its own item: hostile URLs, a database error and a full
disk each end as that recording's error, and the run stores the good ones
and ends. Media origins are scheme + host + port."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from store.recording_store import LocalRecordingStore
from store.settings import TenantSettings
from sync.fake import recording_link, run_app, running_fake
from sync.media import NOT_AN_ORIGIN, Refused, check_url, download
from sync.recordings import FetchOptions, Fetcher
from tests.recording_fixtures import KEY, archive_settings, fake_state, load, with_recordings

FAST = FetchOptions(concurrency=4, rate=0, max_attempts=3, backoff=(0,))
#: The run must end; on the code before issue 12 it waited forever.
ENDS_WITHIN_S = 120


class FullDisk(LocalRecordingStore):
    """The local store, but the disk is full for one call's file."""

    def __init__(self, root: Path, full_for: str) -> None:
        super().__init__(root)
        self.full_for = full_for

    async def put_from_file(self, key: str, source: Path) -> None:
        if key.endswith(f"/{self.full_for}.mp3"):
            raise OSError(errno.ENOSPC, "No space left on device")
        await super().put_from_file(key, source)


def hostile_urls(base: str) -> dict[str, str]:
    """call id -> recording_url: every kind of URL that must be refused before a request."""
    good = recording_link(base, "2024/01/13/x.mp3")
    host_port = base.removeprefix("http://")
    return {
        "tab": good.replace("x.mp3", "x\t.mp3"),
        "cr": good.replace("x.mp3", "x\r.mp3"),
        "lf": good.replace("x.mp3", "x\n.mp3"),
        "del": good.replace("x.mp3", "x\x7f.mp3"),
        "space": good.replace("x.mp3", "x y.mp3"),
        "nbsp": good.replace("x.mp3", "x\u00a0.mp3"),
        "line-separator": good.replace("x.mp3", "x\u2028.mp3"),
        "tab-in-host": good.replace(host_port, host_port.replace(".1:", ".1\t:")),
        "non-ascii-host": good.replace("127.0.0.1", "bü.example"),
        "fullwidth-host": good.replace("127.0.0.1", "１２７.０.０.１"),
        "too-long": good + "&pad=" + "a" * 70_000,
        "bad-port": good.replace(host_port, "127.0.0.1:99999"),
        "open-bracket": "http://[::1/IPCCMedia/MP3Export.do",
        "backslash-userinfo": good.replace(host_port, f"{host_port}\\@evil.example.invalid"),
        "userinfo": good.replace(host_port, f"user:pw@{host_port}"),
        "file": "file:///etc/passwd",
        "gopher": "gopher://127.0.0.1:70/_x",
        "bare-with-newline": "2024/01/13/x\n.mp3",
        "other-port": good.replace(host_port, "127.0.0.1:9"),
    }


async def test_hostile_urls_a_database_error_and_a_full_disk_do_not_stop_the_run(
        engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = fake_state(calls=60)
    real = with_recordings(state)
    good, db_error, disk_full = real[:8], real[8], real[9]
    with running_fake(state) as base:
        hostile = [{**real[10], "call_id": cid, "recording_url": url} for cid, url in hostile_urls(base).items()]
        settings = archive_settings(base, tmp_path)
        # Good ones first and last, hostile ones in between, in call order.
        await load(engine, settings, [*good[:4], db_error, disk_full, *good[4:]])
        await load(engine, settings, hostile, source="webhook")
        async with engine.begin() as conn:
            # A real database error, raised when that one recording is recorded as stored.
            await conn.execute(text(f"""
                CREATE FUNCTION callstore.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.status = 'stored' AND NEW.call_id = '{db_error["call_id"]}' THEN
                        RAISE EXCEPTION 'simulated failure of the database';
                    END IF;
                    RETURN NEW;
                END $$"""))
            await conn.execute(text("CREATE TRIGGER test_refuse BEFORE UPDATE ON callstore.recordings "
                                    "FOR EACH ROW EXECUTE FUNCTION callstore.test_refuse()"))
        store = FullDisk(settings.recordings_dir, str(disk_full["call_id"]))
        with caplog.at_level(logging.INFO, logger="callstore.recordings"):
            report = await asyncio.wait_for(Fetcher(engine, settings, store, FAST).run(), ENDS_WITHIN_S)
        async with httpx.AsyncClient(base_url=base) as client:
            stats = (await client.get("/_fake/stats")).json()

    async with engine.connect() as conn:
        rows = {r.call_id: r for r in await conn.execute(text(
            "SELECT call_id, status, attempts, last_error FROM callstore.recordings"))}
    assert {rows[str(r["call_id"])].status for r in good} == {"stored"}
    # The good files, and the one whose row the database refused (the file
    # first: a commit that happened unseen must never leave a row without it).
    assert len(list(settings.recordings_dir.rglob("*.mp3"))) == len(good) + 1
    for cid in hostile_urls(base):
        row = rows[cid]
        assert row.status == "failed" and row.attempts == 1, (cid, row)
        assert str(row.last_error).startswith("refused: "), (cid, row.last_error)
        # The reason in words, logged once with the call id.
        logged = [r for r in caplog.records if repr(cid) in r.getMessage()]
        assert len(logged) == 1, (cid, [r.getMessage() for r in logged])
    for cid in ("tab", "cr", "lf", "del", "bare-with-newline"):
        assert "control character" in str(rows[cid].last_error) or "whitespace" in str(rows[cid].last_error)
    assert rows["non-ascii-host"].last_error == "refused: the recording URL's host is not ASCII"
    assert rows["other-port"].last_error == NOT_AN_ORIGIN
    # Retried by the usual rules, then failed with the reason.
    db_row, disk_row = rows[str(db_error["call_id"])], rows[str(disk_full["call_id"])]
    assert db_row.status == "failed" and db_row.attempts == 3
    assert db_row.last_error == "database error: simulated failure of the database"
    assert disk_row.status == "failed" and disk_row.attempts == 3
    assert disk_row.last_error == "storage error: No space left on device"
    assert report.counts == {"stored": len(good), "failed": len(hostile) + 2, "retry": 4}
    # No hostile URL reached the server; the good ones once, the others on each attempt.
    assert stats["requests"]["media"] == len(good) + 2 * 3
    assert not any(settings.recordings_dir.joinpath(".partial").iterdir())


class Sniffer:
    """A media server on its own port that records what reaches it, and may
    redirect every request to `redirect_to`."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.redirect_to: str | None = None

    def app(self) -> Starlette:
        async def any_path(request: Request) -> Response:
            self.seen.append({"url": str(request.url), "authorization": request.headers.get("authorization")})
            if self.redirect_to is not None:
                return RedirectResponse(self.redirect_to, status_code=302)
            return Response(b"ID3" + b"\0" * 1000, media_type="audio/mpeg")

        return Starlette(routes=[Route("/{path:path}", any_path)])


async def test_only_configured_origins_are_fetched_and_get_the_key(engine: AsyncEngine, tmp_path: Path) -> None:
    state = fake_state(calls=30)
    records = with_recordings(state)
    other, redirector = Sniffer(), Sniffer()
    with running_fake(state) as base, run_app(other.app()) as other_srv, run_app(redirector.app()) as redir_srv:
        settings = archive_settings(base, tmp_path)
        port = base.rsplit(":", 1)[1]
        # Same host as the media URL, other ports; the media URL's origin over https.
        redirector.redirect_to = f"{other_srv.base_url}/IPCCMedia/MP3Export.do?url=x.mp3"
        cases = {
            "other-port": recording_link(other_srv.base_url, "x.mp3"),
            "redirect-to-other-port": recording_link(redir_srv.base_url, "x.mp3"),
            "https-of-an-http-origin": recording_link(f"https://127.0.0.1:{port}", "x.mp3"),
            "closed-port": recording_link("http://127.0.0.1:1", "x.mp3"),
        }
        hostile = [{**records[0], "call_id": cid, "recording_url": url} for cid, url in cases.items()]
        good = {**records[1], "recording_url": recording_link(base, str(records[1]["recording_url"]))}
        await load(engine, settings, [*hostile, good], source="webhook")
        # The redirector's origin is configured (host:port), the other port is not.
        tenant = settings.tenants[0]
        allowed = TenantSettings(tenant.tenant_id, api_key=KEY, media_url=base,
                                 media_hosts=(f"127.0.0.1:{redir_srv.port}",))
        settings = replace(settings, tenants=(allowed, *settings.tenants[1:]))
        report = await asyncio.wait_for(
            Fetcher(engine, settings, LocalRecordingStore(settings.recordings_dir), FAST).run(), ENDS_WITHIN_S)

    async with engine.connect() as conn:
        rows = dict((await conn.execute(text("SELECT call_id, last_error FROM callstore.recordings "
                                             "WHERE status = 'failed'"))).all())
    assert rows == {cid: NOT_AN_ORIGIN for cid in cases}  # the same words, whatever the port: no probing
    assert report.counts == {"stored": 1, "failed": len(cases)}
    assert other.seen == []  # never contacted, so never given the key
    assert [s["authorization"] for s in redirector.seen] == [KEY]  # a configured origin gets it


@pytest.mark.parametrize(("config", "url", "allowed"), [
    ({"media_url": "https://media.example"}, "https://media.example/x", True),
    ({"media_url": "https://media.example"}, "https://media.example:443/x", True),
    ({"media_url": "https://media.example"}, "http://media.example/x", False),  # never from https to http
    ({"media_url": "https://media.example"}, "https://media.example:8443/x", False),
    ({"media_url": "https://media.example", "media_hosts": ("cdn.example",)}, "https://cdn.example/x", True),
    ({"media_url": "https://media.example", "media_hosts": ("cdn.example",)}, "http://cdn.example/x", False),
    ({"media_url": "https://media.example", "media_hosts": ("cdn.example:8443",)}, "https://cdn.example:8443/x", True),
    ({"media_url": "https://media.example", "media_hosts": ("cdn.example:8443",)}, "https://cdn.example/x", False),
    ({"media_url": "https://media.example", "media_hosts": ("http://old.example",)}, "http://old.example/x", True),
    ({"api_url": "https://2.alohub.vn:9909/api"}, "https://2.alohub.vn:9909/IPCCMedia/x", True),
    ({"api_url": "https://2.alohub.vn:9909/api"}, "https://2.alohub.vn/IPCCMedia/x", False),
    ({"media_url": "https://media.example"}, "https://MEDIA.example/x", True),
    ({"media_url": "https://media.example"}, "https://media.example\\@evil.example/x", False),
])
def test_an_origin_is_scheme_host_and_port(config: dict[str, Any], url: str, allowed: bool) -> None:
    tenant = TenantSettings("t", **config)
    if allowed:
        check_url(tenant, url)
    else:
        with pytest.raises(Refused):
            check_url(tenant, url)


@contextlib.contextmanager
def tls_app(app: Starlette, tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    """`app` over TLS on 127.0.0.1 with a self-signed certificate; yields its
    base URL and a client context that trusts it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                           ssl_certfile=str(cert), ssl_keyfile=str(key)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.01)
        yield f"https://127.0.0.1:{port}", ssl.create_default_context(cafile=str(cert))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def test_a_redirect_from_https_to_http_is_refused(tmp_path: Path) -> None:
    """Even to an http origin the tenant configured: the key went over TLS,
    and must not be sent again in clear."""
    plain, secure = Sniffer(), Sniffer()
    with run_app(plain.app()) as plain_srv, tls_app(secure.app(), tmp_path) as (base, context):
        secure.redirect_to = f"{plain_srv.base_url}/IPCCMedia/MP3Export.do?url=x.mp3"
        tenant = TenantSettings("t", api_key=KEY, media_url=base, media_hosts=(plain_srv.base_url,))
        assert {o.scheme for o in tenant.media_origins} == {"http", "https"}
        async with httpx.AsyncClient(verify=context) as client:
            with pytest.raises(Refused) as info:
                await download(client, tenant, recording_link(base, "x.mp3"), tmp_path)
            secure.redirect_to = None  # the same origin over TLS is fetched, with the key
            got = await download(client, tenant, recording_link(base, "x.mp3"), tmp_path)
    assert str(info.value) == "refused: a redirect from https to http"
    assert plain.seen == []
    assert [s["authorization"] for s in secure.seen] == [KEY, KEY]
    assert got.size == 1003
