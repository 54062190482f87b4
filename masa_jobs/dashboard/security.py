"""Who may use the dashboard, and what every answer tells the browser.

* **Access.** Without an ``authorize`` hook the dashboard answers requests
  from this machine only (127.0.0.0/8, ::1); a request forwarded by a proxy
  counts as local only when every address its forwarding headers name is
  local too. With a hook, the hook alone decides.
* **CSRF.** Every action is a POST carrying a token: the HMAC of a random
  per-browser cookie value under a per-app secret (a signed double submit).
  A page from another site can neither read the cookie nor forge the token.
* **Headers.** A Content-Security-Policy that allows no script and no inline
  style, ``nosniff``, a same-origin referrer, and no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from ipaddress import IPv6Address, ip_address, ip_network

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "Authorize",
    "CsrfSigner",
    "Guard",
    "is_loopback",
]

Authorize = Callable[[Request], bool | Awaitable[bool]]
"""A hook that returns (or awaits to) True for the requests it allows."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    # For browsers that predate frame-ancestors.
    ("x-frame-options", "DENY"),
)
_LOOPBACK = (ip_network("127.0.0.0/8"), ip_network("::1/128"))
# Headers in which a proxy names the client it forwards for.
_FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

CSRF_COOKIE = "masa_jobs_csrf"
CSRF_FIELD = "csrf"
# Random bytes of a browser's cookie value (hex in the cookie): unguessable.
_BROWSER_ID_BYTES = 32
_BROWSER_ID_LENGTH = 2 * _BROWSER_ID_BYTES

_NOT_LOCAL = (
    "This masa-jobs dashboard answers requests from this machine only (127.0.0.1 or ::1); "
    "this one came from {client}. To open it to other clients, give it an authorize hook "
    "that checks who is asking: dashboard(container, authorize=check), where check(request) "
    "returns True (or an awaitable of True) for the users you allow. See the dashboard "
    "documentation, 'Securing it'."
)
_REFUSED = "Not authorized: this masa-jobs dashboard's authorize hook refused the request."


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is an IP address of this machine's loopback interface."""
    if not host:
        return False
    try:
        address = ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _LOOPBACK)


def _forwarded_for(request: Request) -> list[str]:
    """Every client address the request's forwarding headers name."""
    found: list[str] = []
    for header in _FORWARDING_HEADERS:
        for value in request.headers.getlist(header):
            for part in value.split(","):
                found.append(_forwarded_address(part) if header == "forwarded" else part.strip())
    return found


def _forwarded_address(element: str) -> str:
    """The address of one RFC 7239 ``Forwarded`` element (``for=...``), or ''."""
    for pair in element.split(";"):
        key, _, value = pair.strip().partition("=")
        if key.lower() == "for":
            value = value.strip().strip('"')
            # "[::1]:8080" or "127.0.0.1:8080": drop the port.
            if value.startswith("["):
                return value[1 : value.find("]")]
            return value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return ""


def _is_local(request: Request) -> bool:
    client = request.client.host if request.client is not None else None
    return is_loopback(client) and all(is_loopback(a) for a in _forwarded_for(request))


class Guard:
    """ASGI middleware: refuses requests the dashboard must not answer (403)
    and adds the security headers to every answer."""

    def __init__(self, app: ASGIApp, authorize: Authorize | None) -> None:
        self._app = app
        self._authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        send = partial(_with_security_headers, send)
        refusal = await self._refusal(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def _refusal(self, request: Request) -> Response | None:
        if self._authorize is None:
            if _is_local(request):
                return None
            client = request.client.host if request.client is not None else "an unknown address"
            return PlainTextResponse(_NOT_LOCAL.format(client=client), status_code=403)
        allowed = self._authorize(request)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        return None if allowed is True else PlainTextResponse(_REFUSED, status_code=403)


async def _with_security_headers(send: Send, message: Message) -> None:
    if message["type"] == "http.response.start":
        headers = MutableHeaders(scope=message)
        for name, value in _SECURITY_HEADERS:
            headers[name] = value
    await send(message)


class CsrfSigner:
    """Makes and checks the CSRF tokens of one dashboard (signed double submit)."""

    def __init__(self, secret: bytes | str | None = None) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        # A per-process secret by default: tokens of another process (or an
        # earlier run) are refused, and the page is simply loaded again.
        self._secret = secret or secrets.token_bytes(32)

    def token(self, browser_id: str) -> str:
        """The token that a form shown to the browser with this cookie value carries."""
        return hmac.new(self._secret, browser_id.encode(), hashlib.sha256).hexdigest()

    def browser_id(self, request: Request) -> tuple[str, bool]:
        """The browser's cookie value, and whether it is new (to be set)."""
        current = request.cookies.get(CSRF_COOKIE, "")
        if _well_formed(current):
            return current, False
        return secrets.token_hex(_BROWSER_ID_BYTES), True

    def remember(self, response: Response, request: Request, browser_id: str) -> None:
        """Set the cookie holding ``browser_id`` on ``response``."""
        response.set_cookie(
            CSRF_COOKIE,
            browser_id,
            path=request.scope.get("root_path") or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def valid(self, request: Request, token: object) -> bool:
        """Whether ``token`` (a form field) matches the request's cookie."""
        browser_id = request.cookies.get(CSRF_COOKIE, "")
        if not _well_formed(browser_id) or not isinstance(token, str):
            return False
        return hmac.compare_digest(self.token(browser_id), token)


def _well_formed(browser_id: str) -> bool:
    return len(browser_id) == _BROWSER_ID_LENGTH and all(
        c in "0123456789abcdef" for c in browser_id
    )
