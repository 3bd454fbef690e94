"""Every exception httpx raises for a request, in one tuple, so an adapter translates them all
in one place: :class:`httpx.HTTPError` covers transport errors, timeouts, undecodable answers
(``DecodingError``), redirect loops and status errors; :class:`httpx.InvalidURL`,
:class:`httpx.StreamError` and :class:`httpx.CookieConflict` derive from other bases."""

from __future__ import annotations

import httpx

HTTPX_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    httpx.CookieConflict,
)
