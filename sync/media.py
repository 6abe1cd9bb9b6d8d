"""Downloading one recording from MP3Export, safely.

- Only hosts in the tenant's `media_hosts` are contacted; redirects are
  followed by hand, re-checking the host of every hop, at most `max_redirects`.
- The body streams to a temporary file in the staging directory (memory
  stays bounded by one chunk), hashed and counted on the way.
- It must be audio: content type `audio/*` or `application/octet-stream`, and
  it must open with an ID3 tag or an MPEG frame sync. An error page served
  with 200 is a failure; so is a body shorter than its Content-Length.

Errors:

    DownloadError          failed this time; retried later with backoff
    ├── Refused            against the safety policy (host, scheme): final
    └── Expired            404/410: Alohub no longer has the file: final
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import httpx

from store.settings import TenantSettings

EXPORT_PATH = "/IPCCMedia/MP3Export.do"
AUDIO_TYPES = ("audio/", "application/octet-stream")
REDIRECTS = (301, 302, 303, 307, 308)


class DownloadError(Exception):
    """A download that failed; the message is safe to store and show (no secrets)."""


class Refused(DownloadError):
    """The URL or a redirect goes against the safety policy."""


class Expired(DownloadError):
    """Alohub answered 404/410: the file is gone for good."""


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int
    content_type: str
    url: str


def resolve_url(tenant: TenantSettings, recording_url: str) -> str:
    """The MP3Export URL of a call: as given when it is a full URL (webhook),
    else the bare path (history API) on the tenant's media_url."""
    value = recording_url.strip()
    if value.lower().startswith(("http://", "https://")):
        return value
    if "://" in value:
        raise Refused("recording_url has a scheme other than http or https")
    if not tenant.media_url:
        raise Refused("a bare recording path needs ALOHUB_MEDIA_URL (or ALOHUB_API_URL) for this tenant")
    # Encoded as the webhook's own links are, so both sources give one URL.
    return f"{tenant.media_url}{EXPORT_PATH}?url={quote(value, safe='/')}&source=ipcc"


def check_url(tenant: TenantSettings, url: str) -> None:
    """Refuse anything but http(s) to an allowed media host."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise Refused("recording URL does not parse") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise Refused(f"scheme {parts.scheme!r} is not http or https")
    if parts.username or parts.password:
        raise Refused("recording URL carries credentials")
    if not host or host not in tenant.media_hosts:
        raise Refused(f"host {host!r} is not in the tenant's media hosts (ALOHUB_MEDIA_HOSTS)")


def is_mp3(head: bytes) -> bool:
    """An ID3v2 tag or an MPEG audio frame sync (11 set bits)."""
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


async def download(
    client: httpx.AsyncClient,
    tenant: TenantSettings,
    url: str,
    staging_dir: Path,
    *,
    max_redirects: int = 5,
    max_bytes: int = 2 * 1024**3,
) -> Downloaded:
    """Fetch `url` into a new file in `staging_dir` (the caller stores or removes it;
    the store makes it durable)."""
    headers = {"Accept-Encoding": "identity"}
    if tenant.api_key:
        headers["Authorization"] = tenant.api_key  # the raw key, as the vendor's example sends it
    for _ in range(max_redirects + 1):
        check_url(tenant, url)
        try:
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise DownloadError(f"HTTP {response.status_code} without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status_code in (404, 410):
                    raise Expired(f"HTTP {response.status_code}: Alohub no longer has the file")
                if response.status_code != 200:
                    raise DownloadError(f"HTTP {response.status_code}")
                path, sha256, size, ctype = await _save(response, staging_dir, max_bytes)
                return Downloaded(path, sha256, size, ctype, url)
        except httpx.HTTPError as exc:
            # Type and text only: httpx messages name the URL at most, never headers.
            raise DownloadError(f"{type(exc).__name__}: {str(exc)[:200] or 'connection failed'}") from None
    raise Refused(f"more than {max_redirects} redirects")


async def _save(response: httpx.Response, staging_dir: Path, max_bytes: int) -> tuple[Path, str, int, str]:
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype.startswith(AUDIO_TYPES):
        raise DownloadError(f"body is {ctype or 'untyped'}, not audio")
    expected = _content_length(response)
    if expected is not None and expected > max_bytes:
        raise DownloadError(f"body of {expected} bytes is over the {max_bytes}-byte limit")
    path = staging_dir / f"{uuid.uuid4().hex}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    ok = False
    try:
        digest = hashlib.sha256()
        size = 0
        head = b""
        async for chunk in response.aiter_raw():
            if len(head) < 4:
                head += chunk[: 4 - len(head)]
                if len(head) >= 4 and not is_mp3(head):
                    raise DownloadError("body does not start with an ID3 tag or an MPEG frame")
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(f"body is over the {max_bytes}-byte limit")
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        if size == 0:
            raise DownloadError("empty body")
        if not is_mp3(head):
            raise DownloadError("body does not start with an ID3 tag or an MPEG frame")
        if expected is not None and size != expected:
            raise DownloadError(f"truncated: {size} of {expected} bytes")
        ok = True
        return path, digest.hexdigest(), size, ctype
    finally:
        os.close(fd)
        if not ok:
            path.unlink(missing_ok=True)


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or response.headers.get("content-encoding", "identity") != "identity":
        return None
    try:
        return int(value)
    except ValueError:
        raise DownloadError("Content-Length is not a number") from None
