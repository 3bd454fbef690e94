"""Redirect-origin policy: where the OAuth dance may send a person's browser.

A caller names its ``baseUrl``; the redirect URI and the page after the authorization are
built from it, and only origins on the allow-list are accepted, so nobody can turn the
callback into an open redirect or have the provider send a code elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from attrs import field, frozen

from connector_core.errors import ValidationError

__all__ = ["OAuthSettings", "origin_of", "with_query"]

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

_Origin = tuple[str, str, int]


def _origin(url: str, path: str, *, allow_path: bool = True) -> _Origin:
    """``(scheme, host, port)`` of an absolute http(s) URL, else :class:`ValidationError`."""

    def bad(why: str) -> ValidationError:
        return ValidationError.for_field(path, why)

    if not isinstance(url, str) or not url or len(url) > 2048:
        raise bad("must be an absolute http(s) URL of at most 2048 characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise bad("must not contain whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, say
        raise bad("must be an absolute http(s) URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise bad("must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise bad("must not contain user information")
    if "#" in url:
        raise bad("must not contain a fragment")
    if "?" in url:
        raise bad("must not contain a query")
    if not allow_path and parts.path not in ("", "/"):
        raise bad("must be an origin (scheme://host[:port]) without a path")
    host = parts.hostname
    if not host:
        raise bad("must name a host")
    try:
        port = parts.port
    except ValueError:
        raise bad("has an invalid port") from None
    if port == 0:
        raise bad("has an invalid port")
    return scheme, host, _DEFAULT_PORTS[scheme] if port is None else port


def _check_origins(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    for i, origin in enumerate(value):
        _origin(origin, f"{attribute.name}[{i}]", allow_path=False)


def _to_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL (a path is fine), or None when
    ``url`` is not one. Normalised as the allow-list compares origins: lower case, and no port
    when it is the scheme's default (``https://a.example.com:443`` is ``https://a.example.com``)."""
    try:
        scheme, host, port = _origin(url, "url")
    except ValidationError:
        return None
    if ":" in host:  # an IPv6 address: bracketed again in a URL
        host = f"[{host}]"
    return f"{scheme}://{host}" if port == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


@frozen
class OAuthSettings:
    """Where the OAuth dance sends the browser.

    ``redirect_path`` and ``post_auth_path`` are appended to the caller's ``baseUrl``
    (``{connector}`` becomes the catalog key). ``allowed_redirect_origins`` lists the origins
    (``scheme://host[:port]``) a ``baseUrl`` may have; empty allows only ``http://localhost``
    and ``http://127.0.0.1`` on any port. ``service_origins`` are allowed whatever that list
    says: the service's own URL, where its web console completes authorizations itself.
    ``legacy_redirect_uri`` is the redirect URI the front end used for ``POST
    /getTokenFromCode`` (e.g. Google's ``postmessage``); when unset, the caller's ``baseUrl`` +
    ``redirect_path`` is used.
    """

    redirect_path: str = "/connectors/oauth/callback/{connector}"
    allowed_redirect_origins: tuple[str, ...] = field(default=(), converter=_to_tuple, validator=_check_origins)
    service_origins: tuple[str, ...] = field(default=(), converter=_to_tuple, validator=_check_origins)
    state_ttl: timedelta = timedelta(minutes=10)
    post_auth_path: str = "/connectors/{connector}"
    legacy_redirect_uri: str | None = None

    def allows(self, origin: _Origin) -> bool:
        scheme, host, _ = origin
        if any(_origin(o, "service_origins", allow_path=False) == origin for o in self.service_origins):
            return True
        if not self.allowed_redirect_origins:
            return scheme == "http" and host in _LOCAL_HOSTS
        return any(
            _origin(o, "allowed_redirect_origins", allow_path=False) == origin for o in self.allowed_redirect_origins
        )

    def checked_base(self, base_url: str) -> str:
        """The caller's base URL, checked against the origin allow-list (no open redirects)."""
        if not self.allows(_origin(base_url, "baseUrl")):
            raise ValidationError.for_field("baseUrl", "origin is not allowed as an OAuth redirect target")
        return base_url.rstrip("/")

    def redirect_uri(self, base: str, key: str) -> str:
        """Where the provider sends the person back (``base`` checked by :meth:`checked_base`)."""
        return base + _path(self.redirect_path, key)

    def base_of(self, redirect_uri: str, key: str) -> str:
        """The base a redirect URI was built from."""
        suffix = _path(self.redirect_path, key)
        return redirect_uri[: -len(suffix)] if redirect_uri.endswith(suffix) else redirect_uri

    def post_auth_url(self, base: str, key: str) -> str:
        """Where the front end sends the person after the callback."""
        return base + _path(self.post_auth_path, key)


def _path(template: str, key: str) -> str:
    path = template.replace("{connector}", key)
    return path if path.startswith("/") else f"/{path}"
