"""The httpx client of the calls to OAuth providers when :class:`HttpxOAuthClient` owns it.

It keeps no cookies. A token endpoint may set some (Microsoft's login sets several, load
balancers set affinity cookies), and httpx's client keeps a cookie jar for all its requests: the
next org's refresh at the same provider would have carried the previous org's cookies. Dropping
them also spares the jar's bookkeeping (httpx builds a urllib request and response for the jar
on every answer, a twentieth of a refresher batch's event-loop time).

A URL is parsed once (the same token endpoint is called for every token of a provider): httpx
parses the string on every request otherwise. Redirects are not followed; connections go
through :func:`~adapters.http.lean_pool.lean_mounts`.
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx

from adapters.http.lean_pool import lean_mounts
from adapters.lru import LruCache

__all__ = ["ProviderHttpClient"]


class _NoJar(CookieJar):
    """A cookie jar that keeps nothing."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class _Discarded(httpx.Cookies):
    """Cookies that stay empty: what an answer sets, and what is set or merged into them
    (``set``, ``[name] = value``, ``update``), is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.jar = _NoJar()

    def extract_cookies(self, response: httpx.Response) -> None:
        return None  # not even parsed


class ProviderHttpClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` without cookies and with parsed URLs kept (at most ``max_urls``)."""

    def __init__(self, *, timeout: float, limits: httpx.Limits, max_urls: int = 1024) -> None:
        super().__init__(timeout=timeout, follow_redirects=False, limits=limits, mounts=lean_mounts(limits))
        self._discarded = _Discarded()
        self._urls: LruCache[str, httpx.URL] = LruCache(max_urls)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._discarded

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("the provider client keeps no cookies")

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        if isinstance(url, str):
            parsed = self._urls.get(url)
            if parsed is None:
                parsed = httpx.URL(url)
                self._urls.put(url, parsed)
            url = parsed
        return super().build_request(method, url, **kwargs)
