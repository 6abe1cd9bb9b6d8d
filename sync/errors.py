"""Errors of everything that talks to Alohub.

    CallstoreError                       (store.errors)
    └── AlohubError                      route, status, error_code; never the key
        ├── AlohubRequestError           Alohub refused the request; retrying will not help
        │   ├── AlohubAuthError          401 UNAUTHORIZED: the key is missing, wrong, expired or inactive
        │   ├── AlohubScopeError         403 INSUFFICIENT_SCOPE: the key lacks the endpoint's scope
        │   ├── AlohubNotFound           404 NOT_FOUND
        │   └── AlohubBadRequest         400 and other 4xx: the request shape is not what Alohub takes
        ├── AlohubProtocolError          a 2xx answer that is not the documented envelope
        └── AlohubUnavailable            gave up after retrying for the bounded time
            └── AlohubRateLimited        ... and the last answer was 429 RATE_LIMIT_EXCEEDED

Messages name the route and host, the status, Alohub's `error_code` and
`error_message`, and what to do; the API key is scrubbed from anything that
came from the server, and never put there by us.
"""

from __future__ import annotations

from store.errors import CallstoreError


class AlohubError(CallstoreError):
    def __init__(self, message: str, *, route: str, status: int | None = None, error_code: str | None = None) -> None:
        self.route = route
        self.status = status
        self.error_code = error_code
        super().__init__(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class AlohubRequestError(AlohubError):
    """Alohub answered with a final refusal (4xx other than 429)."""


class AlohubAuthError(AlohubRequestError):
    pass


class AlohubScopeError(AlohubRequestError):
    pass


class AlohubNotFound(AlohubRequestError):
    pass


class AlohubBadRequest(AlohubRequestError):
    pass


class AlohubProtocolError(AlohubError):
    """A successful HTTP status whose body is not the envelope callstore expects."""


class AlohubUnavailable(AlohubError):
    """Network errors, timeouts, 5xx or 429 for longer than the client's time budget."""


class AlohubRateLimited(AlohubUnavailable):
    pass


def refusal(status: int) -> type[AlohubRequestError]:
    """The exception class for a final 4xx status."""
    return {401: AlohubAuthError, 403: AlohubScopeError, 404: AlohubNotFound}.get(status, AlohubBadRequest)


HINTS: dict[type[AlohubError], str] = {
    AlohubAuthError: "check ALOHUB_API_KEY (keys expire and can be deactivated in Alohub's Integration > API Keys)",
    AlohubScopeError: "give the API key the scope this endpoint needs (report, queue) in Alohub's Integration > API Keys",
    AlohubNotFound: "check ALOHUB_API_URL / ALOHUB_XAPI_URL",
    AlohubBadRequest: "the request shape is an assumption (docs/alohub-assumptions.md); report the message to Alohub",
}
