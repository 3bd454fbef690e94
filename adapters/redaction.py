"""Connection strings fit for a message a person reads."""

from __future__ import annotations


def redact_url(url: str) -> str:
    """User info hidden and the query (which may carry credentials) dropped; works for the
    multi-host URLs of MongoDB too. Everything up to the last ``@`` counts as user info: a
    password with an unescaped ``/``, ``?`` or ``#`` would otherwise show past where a URL
    parser thinks the user info ends."""
    scheme, sep, rest = url.partition("//")
    at = rest.rfind("@")
    if at >= 0:
        rest = "***" + rest[at:]
    return (scheme + sep + rest).split("?", 1)[0].split("#", 1)[0]
