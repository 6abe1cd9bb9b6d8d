"""Downloading one recording from MP3Export, safely.

- Only the tenant's media origins (scheme, host and port) are contacted;
  redirects are followed by hand, re-checking the origin of every hop, at
  most `max_redirects`, and never from https to http. URLs with whitespace,
  control characters or a non-ASCII host are refused before any parsing
  difference could matter.
- The body streams to a temporary file in the staging directory (memory
  stays bounded by one chunk), hashed and counted on the way.
- It must be audio: content type `audio/*` or `application/octet-stream`, and
  it must open with an ID3 tag or an MPEG frame sync. An error page served
  with 200 is a failure; so is a body shorter than its Content-Length.

Errors:

    DownloadError          failed this time; retried later with backoff
    ├── Refused            against the safety policy (origin, scheme, URL): final
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

from store.settings import DEFAULT_PORTS, Origin, TenantSettings

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
    value = recording_url
    if value[:1].isspace() or value[-1:].isspace():
        raise Refused("refused: the recording URL starts or ends with whitespace")
    if value.lower().startswith(("http://", "https://")):
        return value  # checked whole by check_url: whitespace in a full URL is refused, not trimmed
    if any(not c.isprintable() and not c == " " for c in value):
        raise Refused("refused: the recording path contains a control character or a line break")
    if "://" in value:
        raise Refused("refused: the recording URL's scheme is not http or https")
    if not tenant.media_url:
        raise Refused("refused: a bare recording path needs ALOHUB_MEDIA_URL (or ALOHUB_API_URL) for this tenant")
    # Encoded as the webhook's own links are, so both sources give one URL.
    return f"{tenant.media_url}{EXPORT_PATH}?url={quote(value, safe='/')}&source=ipcc"


#: What `last_error` says for any URL outside the tenant's media origins: the
#: same words whatever the host or port, so that readers of `last_error`
#: cannot use the downloader to probe hosts and ports.
NOT_AN_ORIGIN = "refused: not a configured media origin"


def check_url(tenant: TenantSettings, url: str) -> Origin:
    """The origin of `url`, or Refused: a URL is fetched only when it is plain
    printable ASCII-hosted http(s), without credentials, on one of the tenant's
    media origins. The origin is read by the HTTP client's own parser (the one
    that connects), so no parser difference can smuggle another host past."""
    bad = next((c for c in url if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        kind = "whitespace" if bad.isspace() else "a control character"
        raise Refused(f"refused: the recording URL contains {kind} (U+{ord(bad):04X})")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise Refused("refused: the recording URL does not parse") from None
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused(f"refused: the recording URL's scheme is not http or https ({scheme[:20]!r})")
    if parsed.userinfo:
        raise Refused("refused: the recording URL carries credentials")
    try:
        netloc = urlsplit(url)
        host = (netloc.hostname or "").lower()
        netloc.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise Refused("refused: the recording URL does not parse") from None
    if not host.isascii() or not parsed.host.isascii():
        raise Refused("refused: the recording URL's host is not ASCII")
    origin = Origin(scheme, parsed.host.lower(), parsed.port or DEFAULT_PORTS[scheme])
    # Both parsers must see the same host: a URL they read differently is refused.
    if host.strip("[]") != origin.host.strip("[]") or origin not in tenant.media_origins:
        raise Refused(NOT_AN_ORIGIN)
    return origin


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
    origin = check_url(tenant, url)
    for _ in range(max_redirects + 1):
        headers = {"Accept-Encoding": "identity"}
        if tenant.api_key and origin in tenant.media_origins:
            headers["Authorization"] = tenant.api_key  # the raw key, as the vendor's example sends it
        try:
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise DownloadError(f"HTTP {response.status_code} without a Location")
                    url = urljoin(url, location)
                    following = check_url(tenant, url)
                    if origin.scheme == "https" and following.scheme != "https":
                        raise Refused("refused: a redirect from https to http")
                    origin = following
                    continue
                if response.status_code in (404, 410):
                    raise Expired(f"HTTP {response.status_code}: Alohub no longer has the file")
                if response.status_code != 200:
                    raise DownloadError(f"HTTP {response.status_code}")
                path, sha256, size, ctype = await _save(response, staging_dir, max_bytes)
                return Downloaded(path, sha256, size, ctype, url)
        except httpx.InvalidURL:
            raise Refused("refused: the recording URL does not parse") from None
        except httpx.HTTPError as exc:
            # Type and text only: httpx messages name the URL at most, never headers.
            raise DownloadError(f"{type(exc).__name__}: {str(exc)[:200] or 'connection failed'}") from None
    raise Refused(f"refused: more than {max_redirects} redirects")


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
