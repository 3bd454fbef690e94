"""Connection-string settings checked at load, with errors that never repeat the value.

A URL setting may carry a password (``redis://:pw@host``, ``mongodb://app:pw@a,b/``). A
malformed one used to reach the driver, whose exception text (logged at debug, or shown) can
repeat part of it: an unescaped ``/`` in a password makes the driver read the password as the
port and say so. Here the shape is checked before any driver sees it, and the error names the
setting and what is wrong, never the value.
"""

from __future__ import annotations

from collections.abc import Collection

#: the schemes each kind of URL setting accepts
REDIS_SCHEMES = ("redis", "rediss", "unix")
MONGO_SCHEMES = ("mongodb", "mongodb+srv")
HTTP_SCHEMES = ("http", "https")

_UNESCAPED = "a user name or password with / ? # @ or : in it must be percent-encoded (urllib.parse.quote_plus)"


def _host_problem(host_port: str, *, need_host: bool) -> str | None:
    if host_port.startswith("["):  # [::1]:6379
        end = host_port.find("]")
        if end < 0:
            return "an IPv6 address must be written in brackets: [::1]:port"
        host, rest = host_port[1:end], host_port[end + 1 :]
        if rest and not rest.startswith(":"):
            return "must be scheme://[user:password@]host[:port]/..."
        port = rest[1:] if rest else ""
    else:
        host, sep, port = host_port.rpartition(":")
        if not sep:
            host, port = host_port, ""
        elif not port:
            return "the port is empty"
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return f"the port must be a number from 1 to 65535 ({_UNESCAPED})"
    if need_host and not host:
        return "must name a host: scheme://[user:password@]host[:port]/..."
    return None


def url_problem(url: str, schemes: Collection[str], *, multi_host: bool = False) -> str | None:
    """What is wrong with ``url`` (in words that never repeat it), or ``None``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        return "must start with " + " or ".join(f"{s}://" for s in schemes)
    if scheme.lower() == "unix":
        return None
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, after = rest[:end], rest[end:]
    at = authority.rfind("@")
    if at < 0 and "@" in after:  # the user info was cut short by an unescaped / ? or #
        return _UNESCAPED
    hosts = authority[at + 1 :]
    for host_port in hosts.split(",") if multi_host else (hosts,):
        problem = _host_problem(host_port, need_host=scheme.lower() != "redis" and scheme.lower() != "rediss")
        if problem is not None:
            return problem
    return None
