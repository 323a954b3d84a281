"""Who may use the dashboard: loopback by default, a password or token anywhere else.

A dashboard can add streams, load models and change action parameters, so a bind that other
machines can reach must not be open: :func:`check_bind` refuses it without credentials, and
:func:`install` makes every request (pages, Dash callbacks, the MJPEG view) present them.
Credentials: HTTP Basic with any user name and the password, or the token as
``Authorization: Bearer TOKEN``, ``?token=TOKEN`` (then kept in a cookie, so that ``<img>``
and Dash's own requests carry it) or that cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
from typing import Any

__all__ = ["COOKIE", "AuthConfigError", "Credentials", "check_bind", "install", "is_loopback"]

COOKIE = "edge_vision_dashboard"


class AuthConfigError(ValueError):
    """The bind address and the credentials do not go together (message says why)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) resolves to loopback addresses only."""
    if host in ("", "0.0.0.0", "::"):
        return False  # every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False  # unknown: treat as reachable from outside
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class Credentials:
    """A password and/or a token; ``accepts`` checks one request's headers, query and cookies."""

    def __init__(self, password: str = "", token: str = "") -> None:
        self.password = password
        self.token = token

    @property
    def required(self) -> bool:
        return bool(self.password or self.token)

    def cookie_value(self) -> str:
        # The cookie holds a digest, not the secret itself.
        secret = f"{self.password}\0{self.token}".encode()
        return hashlib.sha256(b"edge_vision_dashboard\0" + secret).hexdigest()

    def accepts(
        self, authorization: str | None, query_token: str | None, cookie: str | None
    ) -> bool:
        if not self.required:
            return True
        if cookie and hmac.compare_digest(cookie, self.cookie_value()):
            return True
        if self.token and query_token and hmac.compare_digest(query_token, self.token):
            return True
        scheme, _, value = (authorization or "").partition(" ")
        if self.token and scheme.lower() == "bearer" and hmac.compare_digest(value, self.token):
            return True
        if self.password and scheme.lower() == "basic":
            try:
                _user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(password, self.password)
        return False


def check_bind(host: str, credentials: Credentials) -> None:
    """Refuse a non-loopback ``host`` without a password or token."""
    if not is_loopback(host) and not credentials.required:
        raise AuthConfigError(
            f"host {host!r} is reachable from other machines: set a password or token "
            "(parameters password / token, or EDGE_VISION_DASHBOARD_PASSWORD / _TOKEN), "
            "or bind 127.0.0.1"
        )


def install(server: Any, credentials: Credentials) -> None:
    """Check credentials before every request of the Flask ``server``."""
    if not credentials.required:
        return
    from flask import Response, request

    @server.before_request
    def _check() -> Any:
        query_token = request.args.get("token")
        if not credentials.accepts(
            request.headers.get("Authorization"), query_token, request.cookies.get(COOKIE)
        ):
            return Response(
                "authentication required (password or token)\n",
                401,
                {"WWW-Authenticate": 'Basic realm="edge_vision dashboard"'},
            )
        request.environ["edge_vision.set_cookie"] = True
        return None

    @server.after_request
    def _remember(response: Any) -> Any:
        if request.environ.get("edge_vision.set_cookie") and request.cookies.get(COOKIE) is None:
            response.set_cookie(
                COOKIE, credentials.cookie_value(), httponly=True, samesite="Strict"
            )
        return response
