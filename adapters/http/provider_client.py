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

from typing import Any

import httpx

from adapters.http.lean_pool import lean_mounts
from adapters.lru import LruCache

__all__ = ["ProviderHttpClient"]


class _Discarded(httpx.Cookies):
    """A jar that stays empty: what an answer sets, and what is set on it, is dropped."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


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
